//! The service's deadlines and windows run on the core's one clock
//! ([`crate::time`]): under tokio's paused clock they are advanced, not
//! slept through.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::auth::Role;
use crate::registry::Frontend;
use crate::throttle::FAILURE_WINDOW;

/// A signed-in principal of a new token with `role` and `scope`.
fn principal(svc: &Service, role: Role, scope: &str, peer: SocketAddr) -> Arc<Principal> {
    let (_, secret) = svc.bootstrap_token("p", role, scope).unwrap();
    svc.authenticate(secret.expose(), peer, Instant::now())
        .unwrap()
}

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
    let peer: SocketAddr = "192.0.2.8:1".parse().unwrap();
    let principal = principal(&svc, Role::Device, "lab/*", peer);
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

#[derive(Debug)]
struct NoFigures;

impl SiteReport for NoFigures {
    fn figures(&self) -> SiteFigures {
        SiteFigures::default()
    }
}

/// A store that counts writes (a read-only site view must make none).
#[derive(Default)]
struct CountingStore(std::sync::atomic::AtomicUsize);

impl crate::store::HistoryStore for CountingStore {
    fn write(&self, _: &[&[Reading]]) -> Result<(), crate::store::HistoryError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn history(&self, _: &HistoryQuery) -> Result<History, crate::store::HistoryError> {
        Ok(History::default())
    }
    fn prune(
        &self,
        _: &dyn Fn(&str) -> i64,
        _: usize,
    ) -> Result<crate::store::PruneStep, crate::store::HistoryError> {
        Ok(crate::store::PruneStep {
            deleted: 0,
            more: false,
        })
    }
}

#[tokio::test]
async fn a_site_view_refuses_every_push_and_writes_nothing_it_takes_in() {
    let (svc, _) = service(Limits::default());
    let store = Arc::new(CountingStore::default());
    let handle = StoreHandle::read_only(store.clone(), crate::store::writer::QuerySlots::default());
    let svc = Arc::new(svc.with_site_store(handle.clone(), Arc::new(NoFigures)));
    assert!(svc.is_read_only());
    let peer: SocketAddr = "192.0.2.9:1".parse().unwrap();
    let principal = principal(&svc, Role::Device, "*", peer);
    let caller = Caller {
        principal: &principal,
        peer,
    };
    let pushed = [PushedReading {
        sensor: "hall-1/t".to_owned(),
        timestamp_us: 1,
        value: 1.0,
        quality: Quality::Good,
    }];
    // Every way in: a push (native, MQTT), a bulk write (line protocol,
    // SenML), its early check, and a SenML pack's units.
    assert_eq!(
        svc.push(caller, &pushed, Instant::now()).unwrap_err(),
        ServiceError::ReadOnly
    );
    assert_eq!(
        svc.push_bulk(caller, &pushed, Instant::now(), 10)
            .unwrap_err(),
        ServiceError::ReadOnly
    );
    assert_eq!(svc.may_push(caller).unwrap_err(), ServiceError::ReadOnly);
    assert_eq!(
        svc.check_units(caller, &[("hall-1/t", "Cel")]).unwrap_err(),
        ServiceError::ReadOnly
    );
    let checked = vec![Reading {
        sensor: Arc::from("hall-1/t"),
        timestamp_us: 1,
        value: 1.0,
        quality: Quality::Good,
    }];
    assert_eq!(
        svc.commit_push(checked).await.unwrap_err(),
        ServiceError::ReadOnly,
        "a commit that skipped the checks"
    );
    assert_eq!(ServiceError::ReadOnly.code(), ErrorCode::Forbidden);
    assert_eq!(svc.sensor_count(), 0, "nothing entered the catalog");
    // What the site's source takes in is published, not written back.
    let sink = svc.source_sink("site");
    let name = sink.register("hall-1/t", "").unwrap();
    sink.ingest(&[Reading {
        sensor: name,
        timestamp_us: 5,
        value: 2.0,
        quality: Quality::Good,
    }]);
    let admin = svc
        .authenticate(
            svc.bootstrap_token("a", Role::Admin, "*")
                .unwrap()
                .1
                .expose(),
            peer,
            Instant::now(),
        )
        .unwrap();
    let admin = Caller {
        principal: &admin,
        peer,
    };
    assert_eq!(svc.latest(admin, "hall-1/t").unwrap().timestamp_us, 5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(handle.dropped(), 0, "not even offered to the store");
}
