//! gzip for request and response bodies that are not gRPC (tonic compresses gRPC messages
//! itself): reading a client's `Accept-Encoding`-style list, compressing a response, and
//! decompressing a request under the body size limit, so that a small compressed body that
//! expands without end stops at the limit instead of filling memory.

use std::io::{Read as _, Write as _};

use http::HeaderValue;

/// The one compression the servers offer besides identity.
pub const GZIP: &str = "gzip";

/// Why a compressed body could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The decompressed body exceeds the limit, in bytes.
    #[error("the decompressed request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The body is not valid gzip.
    #[error("decompressing the request body: {0}")]
    Corrupt(String),
}

/// Whether an `Accept-Encoding`-style header (all its values) accepts gzip: `gzip` (or
/// `x-gzip`) listed with a weight above 0, or `*` above 0 when gzip is not listed itself.
pub fn accepts_gzip<'h>(values: impl IntoIterator<Item = &'h HeaderValue>) -> bool {
    let mut wildcard = false;
    for value in values {
        let Ok(list) = value.to_str() else { continue };
        for member in list.split(',') {
            let mut parts = member.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let weight = parts
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
            if coding.eq_ignore_ascii_case(GZIP) || coding.eq_ignore_ascii_case("x-gzip") {
                return weight > 0.0;
            }
            if coding == "*" {
                wildcard = weight > 0.0;
            }
        }
    }
    wildcard
}

/// `data` compressed with gzip.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 32),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// Decompresses a gzip body, refusing more than `limit` decompressed bytes (0 = no limit).
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let limit = super::body::effective_limit(limit);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit).min(1 << 20));
    // One byte past the limit tells "exactly the limit" from "more".
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(data)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists() {
        let check = |v: &str| accepts_gzip(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(check("x-gzip") && check("*") && !check("gzip;q=0, *"));
        assert!(check("gzip"));
        assert!(check("br, GZIP;q=0.5, deflate"));
        assert!(check("identity, gzip"));
        assert!(!check("gzip;q=0"));
        assert!(!check("br, deflate"));
        assert!(!check("gzipped"));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn round_trip_and_limits() {
        let body = b"{\"flagKey\":\"bool\"}".repeat(10);
        let packed = gzip(&body);
        assert_eq!(gunzip(&packed, 0).unwrap(), body);
        assert_eq!(gunzip(&packed, body.len()).unwrap(), body);
        assert_eq!(
            gunzip(&packed, body.len() - 1),
            Err(DecompressError::TooLarge(body.len() - 1))
        );
        // A bomb: 64 MiB of zeros in a few KiB stops at the limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 128 << 10);
        assert_eq!(gunzip(&bomb, 1000), Err(DecompressError::TooLarge(1000)));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(DecompressError::Corrupt(_))
        ));
    }
}
