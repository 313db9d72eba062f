//! The simulator's accept loop. It serves each connection with hyper itself (not `axum::serve`)
//! so that a handler can have its connection reset: the `refused` scenario answers with a TCP RST,
//! which is what a client sees when IMDS or an interceptor refuses it.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use super::imds::ConnControl;
use super::state::SimState;

pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/_sim/scenario", get(super::control::get_scenario))
        .route("/_sim/scenario/{name}", post(super::control::set_scenario))
        .route("/_sim/state", get(super::control::state))
        .route("/_sim/script", post(super::control::script))
        .route(
            "/_sim/clock-offset/{seconds}",
            post(super::control::clock_offset),
        )
        .route("/_sim/clock-drift/{ppm}", post(super::control::clock_drift))
        .route(
            "/_sim/container/scenario",
            get(super::control::get_container_scenario),
        )
        .route(
            "/_sim/container/scenario/{name}",
            post(super::control::set_container_scenario),
        )
        .route("/_sim/sts/code/{code}", post(super::control::set_sts_code))
        .route("/_sim/credentials", post(super::control::set_credentials))
        .route("/v1/credentials", get(super::container::handle))
        .route("/v2/credentials/{id}", get(super::container::handle_ecs))
        .route("/_sts", post(super::sts::handle))
        .fallback(super::imds::handle)
        .with_state(state)
}

/// Sets SO_LINGER to zero so that closing the socket sends RST instead of FIN.
fn arm_reset(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by the connection we are about to drop, and `linger`
    // is a valid `struct linger` for the duration of the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<SimState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(state);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let control = ConnControl {
            reset: Arc::new(Notify::new()),
        };
        let service = TowerToHyperService::new(app.clone().layer(Extension(control.clone())));
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = control.reset.notified() => {
                    arm_reset(fd);
                    // Dropping the connection closes the socket: with linger 0, an RST.
                }
                _ = shutdown.changed() => {}
            }
        });
    }
}
