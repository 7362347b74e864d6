//! CTranslate2 Whisper models → safetensors with Hugging Face parameter names.
//!
//! CTranslate2's `model.bin` (binary version 6): `u32 version`, the spec name and `u32
//! revision`, `u32 count` variables (name, rank, `u32` dims, dtype byte, `u32` byte size, raw
//! little-endian data), then `u32 count` aliases (name → variable). Its Whisper layout fuses the
//! self-attention Q/K/V and the cross-attention K/V projections, which Hugging Face keeps apart.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{Value, json};

/// One variable of a CTranslate2 model.
#[derive(Debug)]
pub struct Ct2Variable {
    pub dims: Vec<usize>,
    pub dtype: Ct2Dtype,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_byte(b: u8) -> Result<Ct2Dtype, String> {
        Ok(match b {
            0 => Ct2Dtype::F32,
            1 => Ct2Dtype::I8,
            2 => Ct2Dtype::I16,
            3 => Ct2Dtype::I32,
            4 => Ct2Dtype::F16,
            5 => Ct2Dtype::Bf16,
            other => return Err(format!("unknown CTranslate2 dtype {other}")),
        })
    }
    fn size(self) -> usize {
        match self {
            Ct2Dtype::I8 => 1,
            Ct2Dtype::I16 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => 2,
            Ct2Dtype::F32 | Ct2Dtype::I32 => 4,
        }
    }
}

/// A parsed CTranslate2 model: spec name, revision and variables (aliases resolved).
#[derive(Debug)]
pub struct Ct2Model {
    pub spec: String,
    pub revision: u32,
    pub variables: HashMap<String, Ct2Variable>,
    pub aliases: HashMap<String, String>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(n)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("variable name: {e}"))
    }
}

impl Ct2Model {
    pub fn read(path: &Path) -> Result<Ct2Model, String> {
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Ct2Model::parse(&buf).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(buf: &[u8]) -> Result<Ct2Model, String> {
        let mut c = Cursor { buf, pos: 0 };
        let version = c.u32()?;
        if !(5..=6).contains(&version) {
            return Err(format!(
                "CTranslate2 binary version {version} is not supported (5 or 6)"
            ));
        }
        let spec = c.string()?;
        let revision = c.u32()?;
        let count = c.u32()?;
        let mut variables = HashMap::new();
        for _ in 0..count {
            let name = c.string()?;
            let rank = c.u8()?;
            let dims = (0..rank)
                .map(|_| c.u32().map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let dtype = Ct2Dtype::from_byte(c.u8()?)?;
            let nbytes = c.u32()? as usize;
            let expected = dims.iter().product::<usize>() * dtype.size();
            if nbytes != expected {
                return Err(format!("{name}: {nbytes} bytes for dims {dims:?}"));
            }
            let data = c.take(nbytes)?.to_vec();
            variables.insert(name, Ct2Variable { dims, dtype, data });
        }
        let mut aliases = HashMap::new();
        if c.pos < buf.len() {
            let n = c.u32()?;
            for _ in 0..n {
                let alias = c.string()?;
                let target = c.string()?;
                aliases.insert(alias, target);
            }
        }
        Ok(Ct2Model {
            spec,
            revision,
            variables,
            aliases,
        })
    }

    fn get(&self, name: &str) -> Result<&Ct2Variable, String> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.variables
            .get(name)
            .ok_or_else(|| format!("variable {name} is missing"))
    }

    fn tensor(&self, name: &str) -> Result<Tensor, String> {
        let v = self.get(name)?;
        let dtype = match v.dtype {
            Ct2Dtype::F32 => DType::F32,
            Ct2Dtype::F16 => DType::F16,
            Ct2Dtype::Bf16 => DType::BF16,
            other => {
                return Err(format!(
                    "{name} is {other:?}: quantized CTranslate2 models are not supported; \
                     convert with --quantization float16 or float32"
                ));
            }
        };
        Tensor::from_raw_buffer(&v.data, dtype, &v.dims, &Device::Cpu).map_err(|e| e.to_string())
    }

    fn scalar(&self, name: &str) -> Result<i64, String> {
        let v = self.get(name)?;
        let b = &v.data;
        Ok(match (v.dtype, b.len()) {
            (Ct2Dtype::I8, 1) => i64::from(b[0] as i8),
            (Ct2Dtype::I16, 2) => i64::from(i16::from_le_bytes([b[0], b[1]])),
            (Ct2Dtype::I32, 4) => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => return Err(format!("{name} is not an integer scalar")),
        })
    }

    fn count_layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.variables
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }
}

/// Splits `t` along dim 0 into `parts` equal pieces.
fn split(t: &Tensor, parts: usize) -> Result<Vec<Tensor>, String> {
    t.chunk(parts, 0).map_err(|e| e.to_string())
}

/// Converts a CTranslate2 Whisper model to Hugging Face-named tensors and a config.json
/// (model dimensions plus the generation fields from CTranslate2's `config.json`).
pub fn convert_whisper(
    model: &Ct2Model,
    ct2_config: &Value,
) -> Result<(HashMap<String, Tensor>, Value), String> {
    if model.spec != "WhisperSpec" {
        return Err(format!(
            "expected a WhisperSpec model, found {}",
            model.spec
        ));
    }
    let mut out = HashMap::new();
    let mut put = |name: String, t: Tensor| {
        out.insert(name, t);
    };
    let linear = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| {
        put(
            format!("{to}.weight"),
            model.tensor(&format!("{from}/weight"))?,
        );
        if let Ok(b) = model.tensor(&format!("{from}/bias")) {
            put(format!("{to}.bias"), b);
        }
        Ok::<(), String>(())
    };
    let norm = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| {
        put(
            format!("{to}.weight"),
            model.tensor(&format!("{from}/gamma"))?,
        );
        put(format!("{to}.bias"), model.tensor(&format!("{from}/beta"))?);
        Ok::<(), String>(())
    };
    // Fused [q; k; v] (self) or [k; v] (cross) projections; Whisper's k_proj has no bias.
    let fused = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str, names: &[&str]| {
        let w = split(&model.tensor(&format!("{from}/weight"))?, names.len())?;
        let b = split(&model.tensor(&format!("{from}/bias"))?, names.len())?;
        for ((name, w), b) in names.iter().zip(w).zip(b) {
            put(format!("{to}.{name}.weight"), w);
            if *name != "k_proj" {
                put(format!("{to}.{name}.bias"), b);
            }
        }
        Ok::<(), String>(())
    };

    let enc_layers = model.count_layers("encoder");
    let dec_layers = model.count_layers("decoder");
    let conv1 = model.get("encoder/conv1/weight")?;
    let (d_model, n_mels) = (conv1.dims[0], conv1.dims[1]);
    let embed = model.get("decoder/embeddings/weight")?;
    let vocab_size = embed.dims[0];
    let n_audio_ctx = model.get("encoder/position_encodings/encodings")?.dims[0];
    let n_text_ctx = model.get("decoder/position_encodings/encodings")?.dims[0];

    for i in [1, 2] {
        linear(
            &mut put,
            &format!("encoder/conv{i}"),
            &format!("model.encoder.conv{i}"),
        )?;
    }
    put(
        "model.encoder.embed_positions.weight".into(),
        model.tensor("encoder/position_encodings/encodings")?,
    );
    put(
        "model.decoder.embed_tokens.weight".into(),
        model.tensor("decoder/embeddings/weight")?,
    );
    put(
        "model.decoder.embed_positions.weight".into(),
        model.tensor("decoder/position_encodings/encodings")?,
    );
    for (side, layers) in [("encoder", enc_layers), ("decoder", dec_layers)] {
        for i in 0..layers {
            let (f, t) = (
                format!("{side}/layer_{i}"),
                format!("model.{side}.layers.{i}"),
            );
            norm(
                &mut put,
                &format!("{f}/self_attention/layer_norm"),
                &format!("{t}.self_attn_layer_norm"),
            )?;
            fused(
                &mut put,
                &format!("{f}/self_attention/linear_0"),
                &format!("{t}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            )?;
            linear(
                &mut put,
                &format!("{f}/self_attention/linear_1"),
                &format!("{t}.self_attn.out_proj"),
            )?;
            if side == "decoder" {
                norm(
                    &mut put,
                    &format!("{f}/attention/layer_norm"),
                    &format!("{t}.encoder_attn_layer_norm"),
                )?;
                linear(
                    &mut put,
                    &format!("{f}/attention/linear_0"),
                    &format!("{t}.encoder_attn.q_proj"),
                )?;
                fused(
                    &mut put,
                    &format!("{f}/attention/linear_1"),
                    &format!("{t}.encoder_attn"),
                    &["k_proj", "v_proj"],
                )?;
                linear(
                    &mut put,
                    &format!("{f}/attention/linear_2"),
                    &format!("{t}.encoder_attn.out_proj"),
                )?;
            }
            norm(
                &mut put,
                &format!("{f}/ffn/layer_norm"),
                &format!("{t}.final_layer_norm"),
            )?;
            linear(&mut put, &format!("{f}/ffn/linear_0"), &format!("{t}.fc1"))?;
            linear(&mut put, &format!("{f}/ffn/linear_1"), &format!("{t}.fc2"))?;
        }
        norm(
            &mut put,
            &format!("{side}/layer_norm"),
            &format!("model.{side}.layer_norm"),
        )?;
    }

    let heads = |prefix: &str| model.scalar(&format!("{prefix}/num_heads"));
    let config = json!({
        "model_type": "whisper",
        "d_model": d_model,
        "num_mel_bins": n_mels,
        "vocab_size": vocab_size,
        "max_source_positions": n_audio_ctx,
        "max_target_positions": n_text_ctx,
        "encoder_layers": enc_layers,
        "encoder_attention_heads": heads("encoder")?,
        "decoder_layers": dec_layers,
        "decoder_attention_heads": heads("decoder")?,
        "suppress_tokens": ct2_config.get("suppress_ids").cloned().unwrap_or(json!([])),
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin").cloned().unwrap_or(json!([])),
        "lang_ids": ct2_config.get("lang_ids").cloned().unwrap_or(json!([])),
        "alignment_heads": ct2_config.get("alignment_heads").cloned().unwrap_or(json!([])),
        "converted_from": format!("CTranslate2 {} revision {}", model.spec, model.revision),
    });
    Ok((out, config))
}

/// Converts a CTranslate2 Whisper folder (`model.bin`, `config.json`, `tokenizer.json`) into
/// `dest` as `model.safetensors`, `config.json` and `tokenizer.json`.
pub fn import_dir(src: &Path, dest: &Path) -> Result<(), String> {
    let model = Ct2Model::read(&src.join("model.bin"))?;
    let ct2_config: Value = match std::fs::read(src.join("config.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: {e}", src.join("config.json").display()))?,
        Err(_) => json!({}),
    };
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    write_converted(&model, &ct2_config, dest)?;
    let tok = src.join("tokenizer.json");
    std::fs::copy(&tok, dest.join("tokenizer.json"))
        .map_err(|e| format!("copying {}: {e}", tok.display()))?;
    Ok(())
}

/// Writes `model.safetensors` and `config.json` into `dest` (each via a temporary name).
pub fn write_converted(model: &Ct2Model, ct2_config: &Value, dest: &Path) -> Result<(), String> {
    let (tensors, config) = convert_whisper(model, ct2_config)?;
    let part = dest.join("model.safetensors.part");
    candle_core::safetensors::save(&tensors, &part).map_err(|e| e.to_string())?;
    std::fs::rename(&part, dest.join("model.safetensors")).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(dest.join("config.json"), text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_truncated_and_foreign_files() {
        let mut buf = 6u32.to_le_bytes().to_vec();
        buf.extend(12u16.to_le_bytes());
        buf.extend(b"WhisperSpec\0");
        buf.extend(3u32.to_le_bytes());
        buf.extend(1u32.to_le_bytes());
        let err = Ct2Model::parse(&buf).expect_err("truncated");
        assert!(err.contains("truncated"), "{err}");
        let err = Ct2Model::parse(b"PK\x03\x04 not a ct2 file").expect_err("zip");
        assert!(err.contains("binary version"), "{err}");
    }

    /// A CTranslate2 file with the given f32 variables (values 0, 1, 2, … per variable).
    fn ct2_file(vars: &[(&str, Vec<usize>)], aliases: &[(&str, &str)]) -> Vec<u8> {
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend(u16::try_from(s.len() + 1).expect("short").to_le_bytes());
            b.extend(s.as_bytes());
            b.push(0);
        };
        let mut b = 6u32.to_le_bytes().to_vec();
        string(&mut b, "WhisperSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(u32::try_from(vars.len()).expect("few").to_le_bytes());
        for (name, dims) in vars {
            string(&mut b, name);
            b.push(u8::try_from(dims.len()).expect("rank"));
            for d in dims {
                b.extend(u32::try_from(*d).expect("dim").to_le_bytes());
            }
            let n: usize = dims.iter().product();
            if dims.is_empty() {
                // Integer scalar (num_heads): int16.
                b.push(2);
                b.extend(2u32.to_le_bytes());
                b.extend(2i16.to_le_bytes());
                continue;
            }
            b.push(0);
            b.extend(u32::try_from(4 * n).expect("size").to_le_bytes());
            for v in 0..n {
                b.extend((v as f32).to_le_bytes());
            }
        }
        b.extend(u32::try_from(aliases.len()).expect("few").to_le_bytes());
        for (alias, target) in aliases {
            string(&mut b, alias);
            string(&mut b, target);
        }
        b
    }

    #[test]
    fn converts_a_one_layer_model_to_hugging_face_names() {
        let (d, m, v) = (4usize, 3usize, 10usize);
        let mut vars: Vec<(String, Vec<usize>)> = vec![
            ("encoder/conv1/weight".into(), vec![d, m, 3]),
            ("encoder/conv1/bias".into(), vec![d]),
            ("encoder/conv2/weight".into(), vec![d, d, 3]),
            ("encoder/conv2/bias".into(), vec![d]),
            ("encoder/position_encodings/encodings".into(), vec![6, d]),
            ("decoder/position_encodings/encodings".into(), vec![5, d]),
            ("decoder/embeddings/weight".into(), vec![v, d]),
            ("encoder/num_heads".into(), vec![]),
            ("decoder/num_heads".into(), vec![]),
        ];
        for side in ["encoder", "decoder"] {
            let l = format!("{side}/layer_0");
            for norm in ["self_attention/layer_norm", "ffn/layer_norm"] {
                vars.push((format!("{l}/{norm}/gamma"), vec![d]));
                vars.push((format!("{l}/{norm}/beta"), vec![d]));
            }
            vars.push((
                format!("{l}/self_attention/linear_0/weight"),
                vec![3 * d, d],
            ));
            vars.push((format!("{l}/self_attention/linear_0/bias"), vec![3 * d]));
            vars.push((format!("{l}/self_attention/linear_1/weight"), vec![d, d]));
            vars.push((format!("{l}/self_attention/linear_1/bias"), vec![d]));
            vars.push((format!("{l}/ffn/linear_0/weight"), vec![2 * d, d]));
            vars.push((format!("{l}/ffn/linear_0/bias"), vec![2 * d]));
            vars.push((format!("{l}/ffn/linear_1/weight"), vec![d, 2 * d]));
            vars.push((format!("{l}/ffn/linear_1/bias"), vec![d]));
            vars.push((format!("{side}/layer_norm/gamma"), vec![d]));
            vars.push((format!("{side}/layer_norm/beta"), vec![d]));
        }
        let l = "decoder/layer_0/attention";
        vars.push((format!("{l}/layer_norm/gamma"), vec![d]));
        vars.push((format!("{l}/layer_norm/beta"), vec![d]));
        vars.push((format!("{l}/linear_0/weight"), vec![d, d]));
        vars.push((format!("{l}/linear_0/bias"), vec![d]));
        vars.push((format!("{l}/linear_1/weight"), vec![2 * d, d]));
        vars.push((format!("{l}/linear_1/bias"), vec![2 * d]));
        vars.push((format!("{l}/linear_2/weight"), vec![d, d]));
        vars.push((format!("{l}/linear_2/bias"), vec![d]));
        let named: Vec<(&str, Vec<usize>)> =
            vars.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        let file = ct2_file(
            &named,
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        );
        let model = Ct2Model::parse(&file).expect("parses");
        let (tensors, config) =
            convert_whisper(&model, &json!({"lang_ids": [7]})).expect("converts");
        assert_eq!(config["d_model"], 4);
        assert_eq!(config["vocab_size"], 10);
        assert_eq!(config["encoder_layers"], 1);
        assert_eq!(config["decoder_attention_heads"], 2);
        assert_eq!(config["lang_ids"], json!([7]));
        // Fused [q; k; v] split in order; k has no bias.
        let q = &tensors["model.encoder.layers.0.self_attn.q_proj.weight"];
        let v = &tensors["model.decoder.layers.0.self_attn.v_proj.weight"];
        assert_eq!(q.dims(), [4, 4]);
        let first = |t: &Tensor| {
            t.flatten_all()
                .and_then(|t| t.get(0))
                .and_then(|t| t.to_scalar::<f32>())
        };
        assert_eq!(first(q).expect("q"), 0.0);
        assert_eq!(first(v).expect("v"), 32.0);
        assert!(!tensors.contains_key("model.encoder.layers.0.self_attn.k_proj.bias"));
        assert_eq!(
            first(&tensors["model.decoder.layers.0.encoder_attn.v_proj.bias"]).expect("kv"),
            4.0
        );
        // 5 encoder stem + 2 decoder embeddings + 15 + 2 encoder + 24 + 2 decoder.
        assert_eq!(tensors.len(), 50);
    }
}
