use mediasift_media::{Decoded, DecodedText};

use crate::common::decode;

fn text(rel: &str) -> DecodedText {
    match decode(rel).unwrap_or_else(|e| panic!("{rel}: {e}")).decoded {
        Decoded::Text(t) => t,
        other => panic!("{rel} decoded as {:?}", other.kind()),
    }
}

#[test]
fn text_encodings_are_detected_and_decoded() {
    let utf8 = text("text/doc_01.txt");
    assert_eq!(utf8.info.encoding, "utf-8");
    assert!(utf8.text.contains("Universal Declaration of Human Rights"));
    assert!(
        utf8.text.contains('\u{2010}'),
        "the one non-ASCII hyphen survives"
    );

    let utf16 = text("text/derived_utf16.txt");
    assert_eq!(utf16.info.encoding, "utf-16le");
    assert_eq!(utf16.text, utf8.text);

    let latin1 = text("text/doc_03.txt");
    assert_eq!(latin1.info.encoding, "iso-8859-1");
    assert!(
        latin1.text.contains("Würde") && latin1.text.contains('ß'),
        "umlauts decoded"
    );

    let russian = text("text/doc_04.txt");
    assert_eq!(russian.info.encoding, "utf-8");
    assert!(russian.text.contains("Всеобщая декларация прав человека"));
    assert!(russian.info.words > 100);
}
