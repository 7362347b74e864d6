//! Just enough of the ONNX protobuf schema (onnx/onnx.proto, IR v3+) to read a model's graph
//! and initializers with prost; unknown fields are skipped.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "4")]
    pub op_type: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

/// ONNX `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

/// A parsed model: nodes in graph order and the float initializers as tensors.
#[derive(Debug)]
pub struct OnnxModel {
    pub nodes: Vec<NodeProto>,
    pub initializers: HashMap<String, Tensor>,
}

pub fn read(path: &Path) -> Result<OnnxModel, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let model =
        ModelProto::decode(bytes.as_slice()).map_err(|e| format!("not an ONNX model: {e}"))?;
    let graph = model.graph.ok_or("the model has no graph")?;
    let mut initializers = HashMap::new();
    for t in graph.initializer {
        if t.data_type != FLOAT {
            continue; // shapes for Reshape and the like; the port does not need them
        }
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("{}: bad dim", t.name)))
            .collect::<Result<_, _>>()?;
        let values: Vec<f32> = if t.raw_data.is_empty() {
            t.float_data
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let tensor =
            Tensor::from_vec(values, dims, &Device::Cpu).map_err(|e| format!("{}: {e}", t.name))?;
        initializers.insert(t.name, tensor);
    }
    Ok(OnnxModel {
        nodes: graph.node,
        initializers,
    })
}
