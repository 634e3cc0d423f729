//! The HTTP layer in front of s3s: names, counts and logs each request,
//! accounts body bytes and injects faults.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::service::S3Service;

use crate::classify::classify;
use crate::control;
use crate::faults::{error_xml, escape_xml_controls, FaultKind};
use crate::s3_impl::OpTag;
use crate::state::{RequestRecord, Shared};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The hyper service: our layer around the s3s service.
#[derive(Clone)]
pub(crate) struct Front {
    pub shared: Arc<Shared>,
    pub s3: S3Service,
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response<OutBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(req).await })
    }
}

/// Request body that counts the bytes read from it.
struct CountingBody {
    inner: Incoming,
    shared: Arc<Shared>,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r {
            if let Some(data) = frame.data_ref() {
                this.shared.add_received(data.len());
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Response body that counts bytes sent and can be cut short.
pub(crate) struct OutBody {
    inner: Pin<Box<s3s::Body>>,
    shared: Arc<Shared>,
    /// Bytes still allowed before the connection is cut (`None`: no cut).
    remaining: Option<u64>,
    /// Pause before cutting, so that hyper flushes what was sent.
    cut_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl OutBody {
    /// Waits a moment (letting hyper flush), then fails the body.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let timer = self
            .cut_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(100))));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err("injected fault: response body truncated".into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining == Some(0) {
            return this.poll_cut(cx);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if let Some(rem) = &mut this.remaining {
                        if data.len() as u64 > *rem {
                            data.truncate(*rem as usize);
                        }
                        *rem -= data.len() as u64;
                    }
                    this.shared.add_sent(data.len());
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if this.remaining.is_some() => this.poll_cut(cx),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn drain(body: &mut CountingBody) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

fn content_length(resp: &Response<s3s::Body>) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| resp.body().size_hint().exact())
}

impl Front {
    fn out(&self, body: s3s::Body, remaining: Option<u64>) -> OutBody {
        OutBody {
            inner: Box::pin(body),
            shared: self.shared.clone(),
            remaining,
            cut_timer: None,
        }
    }

    fn error_response(
        &self,
        status: u16,
        code: &str,
        resource: &str,
        id: u64,
    ) -> Response<OutBody> {
        let request_id = format!("TESTREQ{id:010}");
        let xml = error_xml(code, resource, &request_id);
        let mut resp = Response::new(self.out(s3s::Body::from(xml), None));
        *resp.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-amz-request-id", v);
        }
        resp
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<OutBody>, BoxError> {
        let (mut parts, body) = req.into_parts();
        if self.shared.control_api.load(Ordering::Relaxed)
            && parts.uri.path().starts_with(control::PREFIX)
        {
            let (status, text) = control::handle(
                &self.shared,
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
            );
            let mut resp = Response::new(self.out(s3s::Body::from(text), None));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Ok(resp);
        }
        let target = classify(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        );
        let headers = parts
            .headers
            .iter()
            .filter(|(k, _)| *k != AUTHORIZATION)
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let resource = parts.uri.path().to_owned();
        let id = self.shared.record(RequestRecord {
            id: 0,
            method: parts.method.to_string(),
            path: resource.clone(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers,
            op: target.op.clone(),
            bucket: target.bucket.clone(),
            key: target.key.clone(),
            status: None,
            fault: None,
        });
        let _busy = self.shared.busy(&target.op);
        let fault = self
            .shared
            .faults
            .lock()
            .pick(&target.op, target.key.as_deref());
        let desc = fault.as_ref().map(FaultKind::describe);
        if let Some(d) = &desc {
            tracing::info!(op = %target.op, key = ?target.key, fault = %d, "injecting fault");
        }
        let is_head = parts.method == Method::HEAD;
        parts.extensions.insert(OpTag(target.op.clone()));
        let mut body = CountingBody {
            inner: body,
            shared: self.shared.clone(),
        };

        let mut corrupt_response = false;
        let mut held = None;
        let mut replaced_body = None;
        let truncate = match fault {
            Some(FaultKind::CorruptRequest) => {
                let bytes = match (&mut body).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return Err(e.into()),
                };
                replaced_body = Some(flip_middle(bytes));
                false
            }
            Some(FaultKind::CorruptResponse) => {
                corrupt_response = true;
                false
            }
            Some(FaultKind::HoldResponse(gate)) => {
                held = Some(gate);
                false
            }
            Some(FaultKind::Status { status, code }) => {
                drain(&mut body).await;
                self.shared.finish(id, Some(status), desc);
                return Ok(self.error_response(status, &code, &resource, id));
            }
            Some(FaultKind::ErrorIn200 { code }) => {
                drain(&mut body).await;
                self.shared.finish(id, Some(200), desc);
                return Ok(self.error_response(200, &code, &resource, id));
            }
            Some(FaultKind::DropConnection) => {
                drain(&mut body).await;
                self.shared.finish(id, None, desc);
                return Err("injected fault: connection dropped".into());
            }
            Some(FaultKind::Delay(d)) => {
                tokio::time::sleep(d).await;
                false
            }
            Some(FaultKind::HoldRequest(gate)) => {
                gate.hold().await;
                false
            }
            Some(FaultKind::TruncateBody) => true,
            Some(FaultKind::LateApply {
                delay,
                status,
                code,
            }) => {
                let bytes = match body.collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return Err(e.into()),
                };
                let s3 = self.s3.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let req = Request::from_parts(parts, s3s::Body::from(bytes));
                    if let Err(e) = s3.call(req).await {
                        tracing::warn!("late-applied request failed: {e:?}");
                    }
                });
                self.shared.finish(id, Some(status), desc);
                return Ok(self.error_response(status, &code, &resource, id));
            }
            None => false,
        };
        let dialect = *self.shared.dialect.read();
        if dialect.if_match_raw_string
            && target.op == "PutObject"
            && parts
                .headers
                .get("if-match")
                .is_some_and(|v| v.as_bytes().starts_with(b"\""))
        {
            // RGW compares the header with the bare ETag as a raw string
            drain(&mut body).await;
            self.shared.finish(id, Some(412), desc);
            return Ok(self.error_response(412, "PreconditionFailed", &resource, id));
        }

        let req = match replaced_body {
            Some(bytes) => Request::from_parts(parts, s3s::Body::from(bytes)),
            None => Request::from_parts(parts, s3s::Body::http_body_unsync(body)),
        };
        let mut resp = self.s3.call(req).await.map_err(BoxError::from)?;
        if let Some(gate) = held {
            let (rparts, rbody) = resp.into_parts();
            let bytes = rbody.collect().await?.to_bytes();
            gate.hold().await;
            resp = Response::from_parts(rparts, s3s::Body::from(bytes));
        }
        if corrupt_response {
            let (rparts, rbody) = resp.into_parts();
            let bytes = rbody.collect().await?.to_bytes();
            resp = Response::from_parts(rparts, s3s::Body::from(flip_middle(bytes)));
        }
        // s3s answers a ranged HEAD with 200; S3 says 206.
        if is_head && resp.status() == StatusCode::OK && resp.headers().contains_key(CONTENT_RANGE)
        {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        let status = resp.status();

        // S3 writes control characters in XML documents as character
        // references; s3s would write them raw (invalid XML).
        let is_xml = resp
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
        let resp = if is_xml && !matches!(target.op.as_str(), "GetObject" | "HeadObject") {
            let (mut rparts, rbody) = resp.into_parts();
            let bytes = rbody.collect().await?.to_bytes();
            let mut bytes = match escape_xml_controls(&bytes) {
                Some(v) => {
                    rparts.headers.remove(CONTENT_LENGTH);
                    Bytes::from(v)
                }
                None => bytes,
            };
            if dialect.complete_empty_etag && target.op == "CompleteMultipartUpload" {
                bytes = empty_etag_element(&bytes);
                rparts.headers.remove(CONTENT_LENGTH);
                rparts.headers.remove("etag");
            }
            Response::from_parts(rparts, s3s::Body::from(bytes))
        } else {
            resp
        };

        let remaining = if truncate {
            let len = content_length(&resp);
            let bodyless = is_head
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
                || len == Some(0);
            if bodyless {
                self.shared.finish(id, None, desc);
                return Err("injected fault: response dropped".into());
            }
            Some(len.map_or(0, |l| l / 2))
        } else {
            None
        };
        self.shared.finish(id, Some(status.as_u16()), desc);
        let (rparts, rbody) = resp.into_parts();
        Ok(Response::from_parts(rparts, self.out(rbody, remaining)))
    }
}

/// The bytes with the lowest bit of the middle one flipped (empty bytes stay empty).
fn flip_middle(bytes: Bytes) -> Bytes {
    if bytes.is_empty() {
        return bytes;
    }
    let mut v = bytes.to_vec();
    let mid = v.len() / 2;
    v[mid] ^= 1;
    Bytes::from(v)
}

/// The XML with the text of its `<ETag>` element removed (RGW's Complete reply).
fn empty_etag_element(xml: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(xml);
    match (text.find("<ETag>"), text.find("</ETag>")) {
        (Some(a), Some(b)) if a < b => {
            Bytes::from(format!("{}{}", &text[..a + "<ETag>".len()], &text[b..]))
        }
        _ => Bytes::copy_from_slice(xml),
    }
}
