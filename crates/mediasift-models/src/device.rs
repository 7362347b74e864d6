use candle_core::Device;
use serde::Serialize;

use crate::ModelError;

/// Where a result came from: model, exact weights, number format and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub id: String,
    pub sha256: String,
    pub dtype: String,
    pub device: String,
}

impl Provenance {
    /// The provenance of f32 inference with a resolved model on a device.
    pub fn of(model: &crate::ResolvedModel, device: &Device) -> Provenance {
        Provenance {
            id: model.id.clone(),
            sha256: model.sha256.clone(),
            dtype: "f32".into(),
            device: device_name(device),
        }
    }
}

/// `cpu`, or `cuda:N` when built with the `cuda` feature.
pub fn select_device(name: &str) -> Result<Device, ModelError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(ordinal) => Device::new_cuda(ordinal)
                .map_err(|e| ModelError::Device(other.into(), e.to_string())),
            None => Err(ModelError::Device(
                other.into(),
                "expected `cpu` or `cuda:N`".into(),
            )),
        },
    }
}

pub(crate) fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
