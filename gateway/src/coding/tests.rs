use std::io::Write;

use super::*;

const LIMITS: Limits = Limits {
    max_bytes: 16 * 1024 * 1024,
    max_ratio: 100,
};

fn encode(coding: Coding, data: &[u8]) -> Vec<u8> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("write");
            e.finish().expect("gzip")
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("write");
            e.finish().expect("zlib")
        }
        Coding::Br => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).expect("write");
            }
            out
        }
        Coding::Zstd => zstd::encode_all(data, 3).expect("zstd"),
    }
}

const ALL: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd];

fn text() -> Vec<u8> {
    (0..2000)
        .map(|i| {
            format!(
                "line {i}: mail jane.doe@example.com about order {}\n",
                i * 7
            )
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn every_coding_round_trips_in_pieces_of_any_size() {
    let plain = text();
    for coding in ALL {
        let encoded = encode(coding, &plain);
        for piece in [1, 2, 7, 100, 4096, encoded.len()] {
            let mut d = Decoder::new(coding, LIMITS).expect("decoder");
            let mut out = Vec::new();
            for p in encoded.chunks(piece) {
                out.extend(d.push(p).expect("push"));
            }
            d.finish().expect("finished");
            assert_eq!(out, plain, "{coding:?} in pieces of {piece}");
        }
    }
}

#[test]
fn raw_deflate_and_gzip_header_fields_are_accepted() {
    let plain = text();
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&plain).expect("write");
    let raw = e.finish().expect("deflate");
    assert_eq!(
        decode_all(Coding::Deflate, &raw, LIMITS).expect("raw"),
        plain
    );
    let mut e = flate2::GzBuilder::new()
        .filename("a.json")
        .comment("c")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), flate2::Compression::fast());
    e.write_all(&plain).expect("write");
    let gz = e.finish().expect("gzip");
    for piece in [1, 3, gz.len()] {
        let mut d = Decoder::new(Coding::Gzip, LIMITS).expect("decoder");
        let mut out = Vec::new();
        for p in gz.chunks(piece) {
            out.extend(d.push(p).expect("push"));
        }
        d.finish().expect("finished");
        assert_eq!(out, plain);
    }
}

/// 10 MiB of zeros: refused at the limit, and no step ever returned more than the limit allows.
#[test]
fn a_decompression_bomb_is_refused_within_the_bound() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    for coding in ALL {
        let bomb = encode(coding, &zeros);
        assert!(bomb.len() < 64 * 1024, "{coding:?}: {}", bomb.len());
        for (limits, want) in [
            (
                Limits {
                    max_bytes: 1024 * 1024,
                    max_ratio: 1_000_000,
                },
                CodingError::TooLarge(1024 * 1024),
            ),
            (
                Limits {
                    max_bytes: u64::MAX,
                    max_ratio: 100,
                },
                CodingError::Ratio(100),
            ),
        ] {
            let mut d = Decoder::new(coding, limits).expect("decoder");
            let mut total = 0usize;
            let mut err = None;
            for p in bomb.chunks(1024) {
                match d.push(p) {
                    Ok(out) => total += out.len(),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            assert_eq!(err, Some(want.clone()), "{coding:?}");
            let bound = limits.max_bytes.min(1024 * 1024 + 100 * bomb.len() as u64);
            assert!(
                total as u64 <= bound,
                "{coding:?}: {total} decoded past {bound}"
            );
        }
    }
}

#[test]
fn corrupt_and_truncated_bodies_are_errors() {
    let plain = text();
    for coding in ALL {
        let encoded = encode(coding, &plain);
        let cut = &encoded[..encoded.len() - 5];
        assert_eq!(
            decode_all(coding, cut, LIMITS),
            Err(CodingError::Truncated(coding.name())),
            "{coding:?}"
        );
        let mut bad = encoded.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 8] {
            *b ^= 0x5a;
        }
        assert!(
            matches!(
                decode_all(coding, &bad, LIMITS),
                Err(CodingError::Corrupt { .. } | CodingError::Truncated(_))
            ),
            "{coding:?}: a corrupt body decoded"
        );
        let mut extra = encoded.clone();
        extra.extend_from_slice(b"garbage after the end");
        assert!(
            decode_all(coding, &extra, LIMITS).is_err(),
            "{coding:?}: trailing data"
        );
    }
    assert!(decode_all(Coding::Gzip, b"not gzip at all", LIMITS).is_err());
}

#[test]
fn content_encoding_names_one_coding() {
    let of = |v: &[&str]| {
        let mut h = http::HeaderMap::new();
        for x in v {
            h.append(http::header::CONTENT_ENCODING, x.parse().expect("value"));
        }
        Coding::of(&h)
    };
    assert_eq!(of(&[]), Ok(None));
    assert_eq!(of(&["identity"]), Ok(None));
    assert_eq!(of(&["GZIP"]), Ok(Some(Coding::Gzip)));
    assert_eq!(of(&["x-gzip"]), Ok(Some(Coding::Gzip)));
    assert_eq!(of(&["br"]), Ok(Some(Coding::Br)));
    assert_eq!(of(&["zstd"]), Ok(Some(Coding::Zstd)));
    assert_eq!(of(&["deflate"]), Ok(Some(Coding::Deflate)));
    assert!(matches!(
        of(&["gzip, br"]),
        Err(CodingError::Unsupported(_))
    ));
    assert!(matches!(
        of(&["gzip", "gzip"]),
        Err(CodingError::Unsupported(_))
    ));
    assert!(matches!(
        of(&["compress"]),
        Err(CodingError::Unsupported(_))
    ));
}
