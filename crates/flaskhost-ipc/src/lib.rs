//! The wire between the front and the workers, and between the supervisor and the fork server.
//!
//! Every slot (one worker thread) owns one Unix stream socket to the front and serves one request
//! at a time on it, so frames carry no stream id. A frame is `u32 LE payload length`, `u8 kind`,
//! payload. The request head is pre-digested into CGI form by the front ([`request`]): header
//! names arrive as `HTTP_*` keys, repeated headers already joined, the path already
//! percent-decoded, so a worker only turns bytes into Python strings.
//!
//! **Architecture invariant:** this crate and `flaskhost-config` are the only ones that define
//! wire or serialised types. It knows nothing of HTTP libraries, tokio or Python.

pub mod control;
pub mod frame;
pub mod request;
pub mod response;
pub mod sync;

pub use frame::{FrameError, Kind};
