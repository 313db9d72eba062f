//! Process signals: SIGINT and SIGTERM end the long-running subcommands gracefully; a second one
//! ends the process at once. SIGHUP never ends them: the exporter re-reads its web configuration
//! file on it, the others ignore it (its default action, death, is what systemd's `reload` or a
//! closing terminal would otherwise bring).

/// Resolves on SIGINT or SIGTERM. A second one while the caller shuts down exits at once
/// (status 130), as a second Ctrl-C is expected to.
pub fn shutdown() -> impl std::future::Future<Output = ()> {
    // Registered here, before the caller starts anything: a SIGINT or SIGTERM that arrives while
    // the servers start is then a graceful shutdown, not the default action (death).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn one(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async fn either(a: &mut Option<Signal>, b: &mut Option<Signal>) {
            tokio::select! {
                _ = one(a) => {}
                _ = one(b) => {}
            }
        }
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        let mut terminate = signal(SignalKind::terminate()).ok();
        async move {
            either(&mut interrupt, &mut terminate).await;
            tokio::spawn(async move {
                either(&mut interrupt, &mut terminate).await;
                tracing::warn!("second signal: exiting without waiting for the shutdown");
                std::process::exit(130);
            });
        }
    }
    // Elsewhere only Ctrl-C, registered when first polled.
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUPs, from the moment this is called (the default action, death, is gone from then on,
/// for the life of the process, even once this is dropped).
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

/// Catches SIGHUP: call it before starting anything, like [`shutdown`].
pub fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Hangups {
            signal: signal(SignalKind::hangup()).ok(),
        }
    }
    #[cfg(not(unix))]
    Hangups {}
}

impl Hangups {
    /// The next SIGHUP (never, where there are none).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

#[cfg(all(test, unix))]
mod tests {
    /// The handlers exist as soon as `shutdown_signal()` returns, before it is polled: a signal
    /// raised in between is caught (the default action would end this test process).
    #[tokio::test]
    async fn a_signal_before_the_first_poll_is_caught() {
        let stop = super::shutdown();
        // SAFETY: raise(3) on this process; the handler above is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), stop)
            .await
            .expect("the raised SIGTERM ends the wait");
    }

    #[tokio::test]
    async fn a_hangup_is_caught_not_fatal() {
        let mut hangups = super::hangups();
        // SAFETY: raise(3) on this process; the handler above is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), hangups.recv())
            .await
            .expect("the raised SIGHUP is received");
    }
}
