//! The multiplexed connection of an `h2c` upstream: opened on first use by one request while
//! the others wait for it, replaced once when it fails, never opened while holding a lock that
//! other requests wait on.

use bytes::Bytes;
use tokio::time::timeout;

use super::Upstream;
use crate::error::UpstreamError;

/// What a waiting request learns from the one opening the h2c connection.
pub(super) type Opened = Option<Result<(u64, h2::client::SendRequest<Bytes>), UpstreamError>>;

/// The h2c connection's state; the number counts connections opened, so a failure seen on an
/// old one never discards its replacement.
pub(super) enum H2c {
    /// None open (the last one's number).
    Idle(u64),
    /// One request is opening it; the others wait on this.
    Connecting(tokio::sync::watch::Receiver<Opened>),
    /// Open.
    Ready(u64, h2::client::SendRequest<Bytes>),
}

/// What a request does about the h2c connection, decided under the lock.
enum H2cStep {
    Use(u64, h2::client::SendRequest<Bytes>),
    Wait(tokio::sync::watch::Receiver<Opened>),
    Connect(u64, tokio::sync::watch::Sender<Opened>),
}

/// Puts the h2c state back to idle if the request opening the connection goes away mid-way.
struct ResetOnDrop<'a> {
    upstream: &'a Upstream,
    generation: u64,
    armed: bool,
}

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut state) = self.upstream.h2.lock() {
            if matches!(&*state, H2c::Connecting(_)) {
                *state = H2c::Idle(self.generation);
            }
        }
    }
}

impl Upstream {
    /// A handle for a new stream on the `h2c` connection, ready to send.
    ///
    /// The connection is opened on first use by one request while the others wait for it (no
    /// lock is held across the connect, and the wait is bounded by `connect_timeout`); a
    /// connection that has failed is replaced once. Waiting for stream capacity (the upstream's
    /// concurrent-stream limit) is bounded by `response_header_timeout`.
    pub async fn h2c(&self) -> Result<h2::client::SendRequest<Bytes>, UpstreamError> {
        for _ in 0..2 {
            let step = {
                let Ok(mut state) = self.h2.lock() else {
                    return Err(UpstreamError::Protocol {
                        reason: "h2c: connection state poisoned".into(),
                    });
                };
                match &*state {
                    H2c::Ready(generation, send) => H2cStep::Use(*generation, send.clone()),
                    H2c::Connecting(rx) => H2cStep::Wait(rx.clone()),
                    H2c::Idle(generation) => {
                        let (tx, rx) = tokio::sync::watch::channel(None);
                        let next = generation + 1;
                        *state = H2c::Connecting(rx);
                        H2cStep::Connect(next, tx)
                    }
                }
            };
            let (generation, send) = match step {
                H2cStep::Use(generation, send) => (generation, send),
                H2cStep::Wait(mut rx) => {
                    let waited = timeout(self.config.connect_timeout, rx.wait_for(Option::is_some))
                        .await
                        .map_err(|_| UpstreamError::ConnectTimeout {
                            addr: self.config.address.to_string(),
                        })?;
                    match waited.ok().as_deref().cloned().flatten() {
                        Some(Ok(opened)) => opened,
                        Some(Err(e)) => return Err(e),
                        // The connecting request went away before finishing: try again.
                        None => continue,
                    }
                }
                H2cStep::Connect(generation, tx) => {
                    // Should this request go away mid-connect, waiters see the sender dropped
                    // and the state must not stay `Connecting`.
                    let mut reset = ResetOnDrop {
                        upstream: self,
                        generation,
                        armed: true,
                    };
                    let opened = self.open_h2c().await;
                    reset.armed = false;
                    if let Ok(mut state) = self.h2.lock() {
                        *state = match &opened {
                            Ok(send) => H2c::Ready(generation, send.clone()),
                            Err(_) => H2c::Idle(generation),
                        };
                    }
                    let shared = match &opened {
                        Ok(send) => Ok((generation, send.clone())),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = tx.send(Some(shared));
                    (generation, opened?)
                }
            };
            match timeout(self.config.response_header_timeout, send.clone().ready()).await {
                Ok(Ok(ready)) => return Ok(ready),
                Ok(Err(_)) => {
                    // The connection is gone: forget it (unless already replaced) and reconnect.
                    if let Ok(mut state) = self.h2.lock() {
                        if matches!(&*state, H2c::Ready(g, _) if *g == generation) {
                            *state = H2c::Idle(generation);
                        }
                    }
                }
                Err(_) => return Err(UpstreamError::ResponseTimeout),
            }
        }
        Err(UpstreamError::Protocol {
            reason: "h2c: connection closed".into(),
        })
    }

    /// Opens the h2c connection and starts driving it.
    async fn open_h2c(&self) -> Result<h2::client::SendRequest<Bytes>, UpstreamError> {
        let conn = self.connect().await?;
        let (send, connection) = timeout(
            self.config.connect_timeout,
            h2::client::Builder::new()
                .initial_window_size(256 * 1024)
                .initial_connection_window_size(1024 * 1024)
                .handshake::<_, Bytes>(conn.reader.io),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout {
            addr: self.config.address.to_string(),
        })?
        .map_err(|e| UpstreamError::Protocol {
            reason: format!("h2c: {e}"),
        })?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(upstream = %name, error = %e, "h2c connection ended");
            }
        });
        Ok(send)
    }
}
