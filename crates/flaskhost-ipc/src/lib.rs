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

/// `n` in decimal, written at the end of `buf` (no allocation, no `core::fmt`): ports,
/// lengths and address octets on the request path.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // A digit: the cast cannot truncate.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal() {
        let mut buf = [0u8; 20];
        for n in [0u64, 7, 10, 443, 65535, 1 << 40, u64::MAX] {
            assert_eq!(super::decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
