use crate::cli::GlobalArgs;
use crate::context;

pub fn show(g: &GlobalArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    print!("{}", toml::to_string_pretty(cfg.raw())?);
    Ok(())
}
