//! tonic (feature `tonic`): request bodies recorded for replay, and
//! `tonic::Status` classified by its code (see [`crate::grpc_code`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tonic::body::Body;

use crate::classify::{Failure, ResponseClass};
use crate::grpc_code::{class_of_code, retry_delay};
use crate::http::ReplayBody;

/// The most a request body may weigh and still be sent again: 4 MiB,
/// gRPC's default largest message. A larger body is sent once; the call
/// makes no further attempt after it.
pub const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// A `tonic::Status` by its code (see [`crate::grpc_code`]), waiting what
/// its `google.rpc.RetryInfo` detail asks, if any. `OK` (which tonic never
/// returns as an error) reads as `UNKNOWN`.
#[must_use]
pub fn classify_status(status: &tonic::Status) -> Failure {
    let class =
        class_of_code(status.code() as i32).unwrap_or(buttress_core::ErrorClass::OutcomeUnknown);
    Failure::new(class).with_retry_after(retry_delay(status.details()))
}

/// A tonic response always succeeds (its errors are `tonic::Status`
/// errors, classified by [`classify_status`]).
impl<T> ResponseClass for tonic::Response<T> {}

/// A tonic request body (a stream of encoded messages) is recorded as the
/// first attempt sends it, up to [`MAX_REPLAY_BYTES`], and each retry
/// replays the recording, then goes on reading the original body where it
/// stopped (a retry after a refused connection sends a body nobody read).
impl ReplayBody for Body {
    type Source = Arc<Mutex<Recording>>;

    fn into_source(self) -> (Self, Self::Source) {
        let mut recording = Arc::new(Mutex::new(Recording {
            source: Some(self),
            frames: Vec::new(),
            bytes: 0,
            readers: 0,
            broken: false,
            broken_by: None,
        }));
        let first = Self::replay(&mut recording).unwrap_or_default();
        (first, recording)
    }

    fn replay(source: &mut Self::Source) -> Option<Self> {
        let mut recording = source.lock().unwrap_or_else(PoisonError::into_inner);
        if recording.broken {
            return None;
        }
        let id = recording.readers;
        recording.readers = recording.readers.wrapping_add(1);
        drop(recording);
        Some(Body::new(Replayed {
            recording: Arc::clone(source),
            position: 0,
            id,
        }))
    }

    fn can_replay(source: &Self::Source) -> bool {
        !source.lock().unwrap_or_else(PoisonError::into_inner).broken
    }
}

/// What was read of a request body so far, shared by its attempts.
#[derive(Debug)]
pub struct Recording {
    /// The rest of the original body; `None` once it ended.
    source: Option<Body>,
    frames: Vec<Recorded>,
    bytes: usize,
    /// Copies made so far (each copy's id).
    readers: usize,
    /// Too large to keep, or the body failed: no further replay.
    broken: bool,
    /// The copy that was reading when the recording broke: the only one
    /// that may go on (the others would miss what was not kept).
    broken_by: Option<usize>,
}

#[derive(Debug, Clone)]
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// One attempt's copy of the body: the recording, then the original.
#[derive(Debug)]
struct Replayed {
    recording: Arc<Mutex<Recording>>,
    position: usize,
    id: usize,
}

impl http_body::Body for Replayed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let recording = Arc::clone(&self.recording);
        let mut recording = recording.lock().unwrap_or_else(PoisonError::into_inner);
        if recording.broken && recording.broken_by != Some(self.id) {
            // A copy made in advance, gone stale: refuse to send a body
            // with a hole in it.
            return Poll::Ready(Some(Err(tonic::Status::failed_precondition(
                "buttress: the request body could not be kept for a retry",
            ))));
        }
        if let Some(frame) = recording.frames.get(self.position) {
            self.position += 1;
            return Poll::Ready(Some(Ok(match frame.clone() {
                Recorded::Data(data) => Frame::data(data),
                Recorded::Trailers(trailers) => Frame::trailers(trailers),
            })));
        }
        let Some(source) = recording.source.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                recording.source = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                recording.broken = true;
                recording.broken_by = Some(self.id);
                recording.source = None;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if !recording.broken {
                    let copy = if let Some(data) = frame.data_ref() {
                        recording.bytes = recording.bytes.saturating_add(data.len());
                        Recorded::Data(data.clone())
                    } else if let Some(trailers) = frame.trailers_ref() {
                        Recorded::Trailers(trailers.clone())
                    } else {
                        Recorded::Data(Bytes::new())
                    };
                    if recording.bytes > MAX_REPLAY_BYTES {
                        recording.broken = true;
                        recording.broken_by = Some(self.id);
                        recording.frames = Vec::new();
                    } else {
                        recording.frames.push(copy);
                        self.position += 1;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        recording.source.is_none() && self.position >= recording.frames.len() && !recording.broken
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    async fn read(body: Body) -> Result<Bytes, tonic::Status> {
        body.collect()
            .await
            .map(http_body_util::Collected::to_bytes)
    }

    #[tokio::test]
    async fn every_copy_sends_the_whole_body() {
        let original = Body::new(Full::new(Bytes::from_static(b"hello, ada")));
        let (first, mut source) = original.into_source();
        // A copy made before the first attempt has been read.
        let early = Body::replay(&mut source).unwrap();
        assert_eq!(read(first).await.unwrap(), "hello, ada");
        assert_eq!(read(early).await.unwrap(), "hello, ada");
        let late = Body::replay(&mut source).unwrap();
        assert_eq!(read(late).await.unwrap(), "hello, ada");
        assert!(Body::can_replay(&source));
    }

    #[tokio::test]
    async fn a_copy_may_be_sent_before_the_first_was_read() {
        let (first, mut source) = Body::new(Full::new(Bytes::from_static(b"x"))).into_source();
        let second = Body::replay(&mut source).unwrap();
        // The first attempt never sent its body (a refused connection).
        drop(first);
        assert_eq!(read(second).await.unwrap(), "x");
    }

    #[tokio::test]
    async fn a_body_too_large_to_keep_is_sent_once() {
        let big = Bytes::from(vec![7u8; MAX_REPLAY_BYTES + 1]);
        let (first, mut source) = Body::new(Full::new(big.clone())).into_source();
        let stale = Body::replay(&mut source).unwrap();
        assert_eq!(
            read(first).await.unwrap(),
            big,
            "the first attempt sends it all"
        );
        assert!(!Body::can_replay(&source));
        assert!(Body::replay(&mut source).is_none());
        let refused = read(stale).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "never a body with a hole"
        );
    }
}
