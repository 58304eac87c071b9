//! gRPC status codes by what they say about retrying (feature `http`),
//! and the `google.rpc.RetryInfo` a server may attach to an error.
//!
//! | code | class | why (from the gRPC status-code guide) |
//! |---|---|---|
//! | `OK` (0) | success | |
//! | `CANCELLED` (1) | `OutcomeUnknown` | the caller did not cancel (this layer never reports its own cuts as a status), so a server or proxy did, possibly after acting |
//! | `UNKNOWN` (2) | `OutcomeUnknown` | an unmapped server error: nothing says the work was not done |
//! | `INVALID_ARGUMENT` (3) | `Permanent` | the request is wrong whatever the server's state |
//! | `DEADLINE_EXCEEDED` (4) | `OutcomeUnknown` | "the operation may have completed successfully" |
//! | `NOT_FOUND` (5) | `Permanent` | |
//! | `ALREADY_EXISTS` (6) | `Permanent` | |
//! | `PERMISSION_DENIED` (7) | `Permanent` | |
//! | `RESOURCE_EXHAUSTED` (8) | `RateLimited` | a quota or the server's resources: slow down, honouring `RetryInfo` |
//! | `FAILED_PRECONDITION` (9) | `Permanent` | "do not retry until the system state has been explicitly fixed" |
//! | `ABORTED` (10) | `OutcomeUnknown` | a conflict (a transaction abort); the guide says retry "at a higher level", so only a call declared idempotent is repeated as is |
//! | `OUT_OF_RANGE` (11) | `Permanent` | |
//! | `UNIMPLEMENTED` (12) | `Permanent` | |
//! | `INTERNAL` (13) | `OutcomeUnknown` | an invariant broke in the server, perhaps after acting |
//! | `UNAVAILABLE` (14) | `Transient` | "most likely a transient condition, which can be corrected by retrying with a backoff" |
//! | `DATA_LOSS` (15) | `Permanent` | |
//! | `UNAUTHENTICATED` (16) | `Permanent` | |
//! | any other number | `OutcomeUnknown` | treated as `UNKNOWN` |
//!
//! `OutcomeUnknown` failures are retried only for idempotent calls (an
//! idempotent policy, or a request marked [`Idempotent`](crate::Idempotent)).

use std::time::Duration;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use buttress_core::ErrorClass;
use http::{HeaderMap, HeaderValue};

use crate::classify::Failure;

/// The class of a gRPC status code (see the table above); `None` for `OK`.
#[must_use]
pub const fn class_of_code(code: i32) -> Option<ErrorClass> {
    Some(match code {
        0 => return None,
        14 => ErrorClass::Transient,
        8 => ErrorClass::RateLimited,
        3 | 5 | 6 | 7 | 9 | 11 | 12 | 15 | 16 => ErrorClass::Permanent,
        _ => ErrorClass::OutcomeUnknown,
    })
}

/// The failure a response's `grpc-status` (and `grpc-status-details-bin`)
/// headers describe; `None` for `OK`. An unreadable code counts as
/// `UNKNOWN`.
pub(crate) fn failure_from_headers(code: &HeaderValue, headers: &HeaderMap) -> Option<Failure> {
    let code = std::str::from_utf8(code.as_bytes())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(2);
    let class = class_of_code(code)?;
    let retry_after = headers
        .get("grpc-status-details-bin")
        .and_then(|v| decode_base64(v.as_bytes()))
        .and_then(|details| retry_delay(&details));
    Some(Failure::new(class).with_retry_after(retry_after))
}

/// gRPC sends binary headers base64-encoded, with or without padding.
fn decode_base64(value: &[u8]) -> Option<Vec<u8>> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(value).ok()
}

const RETRY_INFO: &[u8] = b"type.googleapis.com/google.rpc.RetryInfo";

/// The `retry_delay` of the first `google.rpc.RetryInfo` among the details
/// of an encoded `google.rpc.Status`, capped at
/// [`MAX_RETRY_AFTER`](buttress_core::http::MAX_RETRY_AFTER); a negative
/// delay reads as zero. Malformed input gives `None`, never a panic.
#[must_use]
pub fn retry_delay(status: &[u8]) -> Option<Duration> {
    // google.rpc.Status { code = 1; message = 2; repeated Any details = 3 }
    fields(status)
        .filter(|f| f.number == 3)
        .filter_map(|f| f.bytes)
        .find_map(|any| {
            // google.protobuf.Any { type_url = 1; value = 2 }
            let mut type_url = None;
            let mut value = None;
            for field in fields(any) {
                match field.number {
                    1 => type_url = field.bytes,
                    2 => value = field.bytes,
                    _ => {}
                }
            }
            (type_url? == RETRY_INFO).then_some(())?;
            // google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1 }
            let delay = fields(value?).find(|f| f.number == 1)?.bytes?;
            // google.protobuf.Duration { int64 seconds = 1; int32 nanos = 2 }
            let (mut seconds, mut nanos) = (0i64, 0i64);
            for field in fields(delay) {
                match (field.number, field.varint) {
                    (1, Some(v)) => seconds = v as i64,
                    (2, Some(v)) => nanos = i64::from(v as i32),
                    _ => {}
                }
            }
            let secs = u64::try_from(seconds).unwrap_or(0);
            let nanos = u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0);
            Some(Duration::new(secs, 0).saturating_add(Duration::from_nanos(u64::from(nanos))))
        })
        .map(|d| d.min(buttress_core::http::MAX_RETRY_AFTER))
}

/// One protobuf field: a varint's value or a length-delimited payload.
struct Field<'a> {
    number: u64,
    varint: Option<u64>,
    bytes: Option<&'a [u8]>,
}

/// The fields of a protobuf message; stops at the first malformed byte.
fn fields(mut input: &[u8]) -> impl Iterator<Item = Field<'_>> {
    std::iter::from_fn(move || {
        let key = varint(&mut input)?;
        let number = key >> 3;
        let field = match key & 7 {
            0 => Field {
                number,
                varint: Some(varint(&mut input)?),
                bytes: None,
            },
            1 => {
                input = input.get(8..)?;
                Field {
                    number,
                    varint: None,
                    bytes: None,
                }
            }
            2 => {
                let len = usize::try_from(varint(&mut input)?).ok()?;
                let payload = input.get(..len)?;
                input = input.get(len..)?;
                Field {
                    number,
                    varint: None,
                    bytes: Some(payload),
                }
            }
            5 => {
                input = input.get(4..)?;
                Field {
                    number,
                    varint: None,
                    bytes: None,
                }
            }
            _ => return None,
        };
        Some(field)
    })
}

fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(number: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, u8::try_from(payload.len()).unwrap()];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_retry_info_among_the_details() {
        let duration = [0x08, 3, 0x10, 0x80, 0x84, 0xaf, 0x5f]; // 3s + 200_000_000ns
        let retry_info = len_field(1, &duration);
        let mut any = len_field(1, RETRY_INFO);
        any.extend(len_field(2, &retry_info));
        let mut other = len_field(1, b"type.googleapis.com/google.rpc.DebugInfo");
        other.extend(len_field(2, b""));
        let mut status = vec![0x08, 8];
        status.extend(len_field(3, &other));
        status.extend(len_field(3, &any));
        assert_eq!(retry_delay(&status), Some(Duration::from_millis(3200)));
    }

    #[test]
    fn malformed_details_give_nothing() {
        for input in [&[][..], &[0xff; 16][..], &[0x1a, 50, 1, 2][..], &[0x0b][..]] {
            assert_eq!(retry_delay(input), None);
        }
    }

    #[test]
    fn the_code_table() {
        assert_eq!(class_of_code(0), None);
        assert_eq!(class_of_code(14), Some(ErrorClass::Transient));
        assert_eq!(class_of_code(8), Some(ErrorClass::RateLimited));
        for code in [1, 2, 4, 10, 13, 99, -1] {
            assert_eq!(
                class_of_code(code),
                Some(ErrorClass::OutcomeUnknown),
                "{code}"
            );
        }
        for code in [3, 5, 6, 7, 9, 11, 12, 15, 16] {
            assert_eq!(class_of_code(code), Some(ErrorClass::Permanent), "{code}");
        }
    }
}
