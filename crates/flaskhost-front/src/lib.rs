//! The front: everything between a client's socket and the pool.
//!
//! **Architecture invariants:** the front never links Python and never blocks: every app
//! request becomes a call to an [`Upstream`] (the pool in production, a fake in tests), and
//! every way that call can fail becomes a response in one place, [`rescue::rescue`].

mod app;
mod listen;
pub mod rescue;
mod server;

pub use app::{ConnInfo, Upstream};
pub use listen::{Listener, bind};
pub use server::{FrontOptions, router, serve};
