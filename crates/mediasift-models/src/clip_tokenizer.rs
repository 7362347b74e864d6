//! CLIP's tokenizer: OpenAI's byte-level BPE (`bpe_simple_vocab_16e6.txt.gz`, as open_clip
//! ships it) as a Hugging Face `tokenizer.json` laid out the way transformers' `CLIPTokenizer`
//! builds it, and the encoding CLIP's text tower expects (start, tokens, end; at most the
//! context length, keeping the end token the pooling reads).

use std::io::Read;
use std::path::Path;

use tokenizers::Tokenizer;

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";
/// Merges the released vocabulary uses: `49152 - 256 - 2` after the header line.
const MERGES: usize = 49152 - 256 - 2;
const SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// GPT-2's byte ↔ printable-character table, in its order (printable bytes first).
fn byte_chars() -> Vec<char> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    chars.into_iter().filter_map(char::from_u32).collect()
}

/// `tokenizer.json` (as JSON text) from the gzipped BPE merges file.
pub fn tokenizer_json_from_bpe(gz: &Path) -> Result<String, String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).map_err(|e| e.to_string())?)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", gz.display()))?;
    let merges: Vec<&str> = text.lines().skip(1).take(MERGES).collect();
    if merges.len() != MERGES || merges.iter().any(|m| m.split(' ').count() != 2) {
        return Err(format!("{}: not a CLIP BPE merges file", gz.display()));
    }
    let chars = byte_chars();
    let mut vocab: Vec<String> = chars.iter().map(char::to_string).collect();
    vocab.extend(chars.iter().map(|c| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|m| m.replace(' ', "")));
    vocab.push(START.into());
    vocab.push(END.into());
    let ids: serde_json::Map<String, serde_json::Value> = vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i.into()))
        .collect();
    let (start_id, end_id) = (ids.len() - 2, ids.len() - 1);
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(start_id, START), special(end_id, END)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": {"type": "RobertaProcessing", "sep": [END, end_id],
            "cls": [START, start_id], "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": END,
            "continuing_subword_prefix": "", "end_of_word_suffix": "</w>", "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": ids, "merges": merges},
    });
    Ok(json.to_string())
}

/// Writes `tokenizer.json` built from the gzipped BPE merges file (the model store's step).
pub(crate) fn convert_bpe(gz: &Path, out: &Path) -> Result<(), String> {
    let json = tokenizer_json_from_bpe(gz)?;
    // Fail here, not at first use, if the tokenizers crate cannot read what we wrote.
    Tokenizer::from_bytes(json.as_bytes()).map_err(|e| e.to_string())?;
    std::fs::write(out, json).map_err(|e| e.to_string())
}

/// The ids CLIP's text tower reads for `text`: the tokenizer's start/end-wrapped ids, cut to
/// `context` with the end token kept last (open_clip's and transformers' truncation).
pub fn encode(tokenizer: &Tokenizer, text: &str, context: usize) -> Result<Vec<u32>, String> {
    let enc = tokenizer.encode(text, true).map_err(|e| e.to_string())?;
    let mut ids = enc.get_ids().to_vec();
    if ids.len() > context && context > 0 {
        let last = ids[ids.len() - 1];
        ids.truncate(context);
        ids[context - 1] = last;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_byte_table_covers_every_byte_once() {
        let chars = super::byte_chars();
        assert_eq!(chars.len(), 256);
        let unique: std::collections::HashSet<_> = chars.iter().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(chars[0], '!');
        assert_eq!(chars[188], 'Ā'); // byte 0 follows the 188 printable ones
    }
}
