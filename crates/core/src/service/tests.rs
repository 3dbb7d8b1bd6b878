//! The service's deadlines and windows run on the core's one clock
//! ([`crate::time`]): under tokio's paused clock they are advanced, not
//! slept through.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::auth::Role;
use crate::registry::Frontend;
use crate::throttle::FAILURE_WINDOW;

fn service(limits: Limits) -> (Service, String) {
    let tokens = TokenStore::in_memory(8, limits.message);
    let svc = Service::new("t".into(), limits, tokens, Audit::disabled());
    let (_, secret) = svc.bootstrap_token("admin", Role::Admin, "*").unwrap();
    (svc, secret.expose().to_owned())
}

#[tokio::test(start_paused = true)]
async fn the_failure_window_and_idle_reaping_follow_the_paused_clock() {
    let (svc, secret) = service(Limits {
        auth_failures_per_minute: 2,
        ..Limits::default()
    });
    let peer: SocketAddr = "192.0.2.7:1".parse().unwrap();
    let bad = |svc: &Service| {
        svc.authenticate("sgt_bad", peer, Instant::now())
            .unwrap_err()
    };
    assert_eq!(bad(&svc), ServiceError::Unauthenticated);
    assert_eq!(bad(&svc), ServiceError::Unauthenticated);
    assert_eq!(bad(&svc), ServiceError::AuthThrottled);
    tokio::time::advance(FAILURE_WINDOW.saturating_sub(Duration::from_millis(1))).await;
    assert_eq!(bad(&svc), ServiceError::AuthThrottled);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(bad(&svc), ServiceError::Unauthenticated, "a new window");

    // A signed-in connection is reaped once the idle timeout has passed on
    // the clock, and not a millisecond before.
    let idle = Duration::from_secs(300);
    let admission = svc.admit(peer, Frontend::Native, 0).unwrap();
    svc.sign_in(&secret, admission.connection(), Instant::now())
        .unwrap();
    admission.connection().touch(&svc.clock());
    tokio::time::advance(idle.saturating_sub(Duration::from_millis(1))).await;
    assert_eq!(svc.reap_idle(idle), 0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(svc.reap_idle(idle), 1);
    assert!(admission.connection().stop_requested());
}

#[tokio::test(start_paused = true)]
async fn a_push_rate_refills_as_the_paused_clock_advances() {
    let (svc, _) = service(Limits {
        push_rate_per_sec: 10,
        ..Limits::default()
    });
    let device = svc.bootstrap_token("dev", Role::Device, "lab/*").unwrap();
    let peer: SocketAddr = "192.0.2.8:1".parse().unwrap();
    let principal = svc
        .authenticate(device.1.expose(), peer, Instant::now())
        .unwrap();
    let caller = Caller {
        principal: &principal,
        peer,
    };
    let batch = |n: usize| -> Vec<PushedReading> {
        (0..n)
            .map(|i| PushedReading {
                sensor: "lab/t".to_owned(),
                timestamp_us: 1 + i64::try_from(i).unwrap(),
                value: 1.0,
                quality: Quality::Good,
            })
            .collect()
    };
    assert!(svc.push(caller, &batch(10), Instant::now()).is_ok());
    assert_eq!(
        svc.push(caller, &batch(1), Instant::now()).unwrap_err(),
        ServiceError::PushRate
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(
        svc.push(caller, &batch(1), Instant::now()).is_ok(),
        "one refilled"
    );
    assert_eq!(
        svc.push(caller, &batch(1), Instant::now()).unwrap_err(),
        ServiceError::PushRate
    );
}
