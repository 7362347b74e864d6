//! What every distributed command connects to, built once from the configuration.

use std::sync::Arc;
use std::time::Duration;

use mediasift_core::Config;

use crate::DistError;
use crate::bus::Bus;
use crate::metrics::DistMetrics;
use crate::objects::Objects;
use crate::pg::Pg;
use crate::source::Allowlist;

#[derive(Debug, Clone)]
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub bus: Bus,
    pub pg: Pg,
    pub objects: Arc<Objects>,
    pub allow: Allowlist,
    pub metrics: DistMetrics,
    pub registry: prometheus::Registry,
}

impl Ctx {
    /// Connects to NATS and Postgres, creates/updates the streams and (when configured) applies
    /// the migrations.
    pub async fn connect(
        cfg: Arc<Config>,
        registry: prometheus::Registry,
        pg_connections: u32,
    ) -> Result<Ctx, DistError> {
        let d = cfg.distributed();
        let pg = Pg::connect(&d.postgres_url, pg_connections).await?;
        if d.migrate_on_start {
            pg.migrate().await?;
        }
        let bus = Bus::connect(&d.nats_url, &d.prefix).await?;
        bus.ensure_streams().await?;
        Ok(Ctx {
            objects: Arc::new(Objects::new(d)?),
            allow: Allowlist::new(&d.allowed_roots)?,
            metrics: DistMetrics::register(&registry),
            registry,
            cfg,
            bus,
            pg,
        })
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.cfg.distributed().ack_wait_secs)
    }

    /// The delay before redelivery number `delivered + 1`.
    pub fn backoff(&self, delivered: i64) -> Duration {
        let b = &self.cfg.distributed().backoff_secs;
        let i = usize::try_from(delivered.max(1) - 1).unwrap_or(0);
        Duration::from_secs(b.get(i).or(b.last()).copied().unwrap_or(5))
    }
}
