//! A gRPC greeter without protoc: hand-written prost messages, a server
//! that answers from a script of statuses, and a client over any
//! `GrpcService` (a bare `Channel`, or one wrapped by the layer).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::codegen::http;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

pub const PATH: &str = "/buttress.test.Greeter/SayHello";

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

// google.rpc.Status and the RetryInfo detail, to send a server's pushback.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `RESOURCE_EXHAUSTED` asking the client to wait `delay`.
pub fn resource_exhausted(delay: Duration) -> Status {
    use prost::Message as _;
    let retry_info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    let details = RpcStatus {
        code: Code::ResourceExhausted as i32,
        message: "slow down".into(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry_info.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::ResourceExhausted,
        "slow down",
        details.encode_to_vec().into(),
    )
}

/// What the server saw: one entry per call, with the time it came in and
/// its `grpc-timeout` header.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: tokio::time::Instant,
    pub name: String,
    pub grpc_timeout: Option<String>,
}

/// The server: answers each call with the next scripted status (then OK).
#[derive(Clone, Default)]
pub struct Greeter {
    pub script: Arc<Mutex<VecDeque<Status>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Greeter {
    pub fn scripted(statuses: impl IntoIterator<Item = Status>) -> Self {
        Self {
            script: Arc::new(Mutex::new(statuses.into_iter().collect())),
            seen: Arc::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Serve on 127.0.0.1, on a free port.
    pub async fn serve(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(self)
                .serve_with_incoming(incoming),
        );
        addr
    }
}

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "buttress.test.Greeter";
}

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if request.uri().path() != PATH {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let grpc_timeout = request
                .headers()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let handler = tower::service_fn(move |request: Request<HelloRequest>| {
                let this = this.clone();
                let grpc_timeout = grpc_timeout.clone();
                async move {
                    let name = request.into_inner().name;
                    this.seen.lock().unwrap().push(Seen {
                        at: tokio::time::Instant::now(),
                        name: name.clone(),
                        grpc_timeout,
                    });
                    let scripted = this.script.lock().unwrap().pop_front();
                    match scripted {
                        Some(status) => Err(status),
                        None => Ok(Response::new(HelloReply {
                            message: format!("hello, {name}"),
                        })),
                    }
                }
            });
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// The hand-written client: one unary method over any gRPC transport.
#[derive(Debug, Clone)]
pub struct GreeterClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    pub fn new(transport: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(transport),
        }
    }

    pub async fn say_hello(
        &mut self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("not ready: {}", e.into())))?;
        self.inner
            .unary(
                request,
                http::uri::PathAndQuery::from_static(PATH),
                ProstCodec::<HelloRequest, HelloReply>::default(),
            )
            .await
    }
}
