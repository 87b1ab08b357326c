//! Where connection tasks run: by default on one background thread of the library's own,
//! with a current-thread tokio runtime, rather than on the application's runtime.
//!
//! Why: with `#[tokio::main]` (a multi-thread runtime) and the consumer in `main`, the
//! socket reader ran on a worker while another, idle worker sat in `epoll_wait`; each packet
//! that arrived while the reader held the socket woke that idle worker (`perf`: 12 % of the
//! reader in `sock_def_readable → try_to_wake_up`, 8 % more in switching it in). On the
//! library's own thread nobody else waits on the socket's readiness. Measured on 2 cores,
//! consumer in `main`, default options, A/B against one stream server (BENCHMARKS.md):
//! 1.79M / 2.09M → 2.23M / 2.44M events/s at 100 B, 1.13M / 1.20M → 1.42M / 1.44M at 1 KB,
//! CPU per event down by about a fifth. The thread is shared by every client and socket
//! in the process and parks when they are idle.
//!
//! Handlers and streams still run where the application runs them: only the socket work
//! (reads, decoding, pings, writes, auth requests) is on this thread. [`IoRuntime::Caller`]
//! keeps everything on the application's runtime instead: for tests that pause time
//! (`tokio::time::pause`), or applications that want no thread they did not start.
//!
//! ```
//! use switchboard::{ClientOptions, IoRuntime};
//! // The default: the library's I/O thread.
//! let opts = ClientOptions::builder("app-key").build()?;
//! # let _ = opts;
//! // Everything on the caller's runtime (e.g. a test with paused time).
//! let opts = ClientOptions::builder("app-key").io_runtime(IoRuntime::Caller).build()?;
//! # let _ = opts;
//! # Ok::<(), switchboard::Error>(())
//! ```

use std::future::Future;
use std::sync::OnceLock;

/// Which runtime runs a client's connection task.
///
/// ```
/// use switchboard::IoRuntime;
/// assert_eq!(IoRuntime::default(), IoRuntime::Dedicated);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoRuntime {
    /// The library's own I/O thread (shared by every client in the process).
    #[default]
    Dedicated,
    /// The runtime of whoever creates the client (`tokio::spawn`).
    Caller,
}

/// The I/O thread's runtime, started on first use; `None` if it could not be started.
fn dedicated() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (ready, handle) = std::sync::mpsc::channel();
            let started = std::thread::Builder::new().name("switchboard-io".into()).spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::warn!("cannot start the I/O thread's runtime ({e}): using the caller's");
                        let _ = ready.send(None);
                        return;
                    }
                };
                let _ = ready.send(Some(runtime.handle().clone()));
                // Runs the connection tasks until the process ends.
                runtime.block_on(std::future::pending::<()>());
            });
            match started {
                Ok(_) => handle.recv().ok().flatten(),
                Err(e) => {
                    tracing::warn!("cannot start the I/O thread ({e}): using the caller's runtime");
                    None
                }
            }
        })
        .as_ref()
}

/// Spawn a connection task on `runtime` (the caller's if the I/O thread is unavailable).
pub(crate) fn spawn<F>(runtime: IoRuntime, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match runtime {
        IoRuntime::Dedicated if let Some(handle) = dedicated() => drop(handle.spawn(task)),
        _ => drop(tokio::spawn(task)),
    }
}
