//! Parking: idle plain-TCP connections of any front end wait without a task.
//!
//! An authenticated connection (native or MQTT) with no subscription, no
//! partial frame or packet and nothing to send, quiet for
//! `native.park_after_ms` (or just past its hello or CONNECT), hands its
//! socket and its state to the parker and its task ends.
//! The parker is one thread with one `mio` poll: a parked connection costs
//! its state (a couple of hundred bytes) instead of a task and a runtime
//! I/O registration. When the socket becomes readable, or the connection is
//! told to stop (kick, revocation, idle timeout, shutdown; checked every
//! 100 ms), the parker hands it back to the runtime, where the same
//! connection loop carries on: a stop gets its goodbye frame as always.
//!
//! Bounded: hand-overs go through a channel of [`MAX_QUEUED`]; when it is
//! full (or the parker has ended) a connection stays a task. Parked
//! connections still count against every connection cap (their registry
//! entry stays).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use tokio_util::task::TaskTracker;

/// Hand-overs waiting for the parker thread.
pub const MAX_QUEUED: usize = 1024;
/// How often parked connections are checked for a stop request.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// The token of the parker's own waker.
const WAKE: Token = Token(usize::MAX);

/// What a parked connection leaves with the parker.
pub trait Parkable: Send + 'static {
    /// Whether the connection was told to stop, or the daemon is shutting
    /// down, while it was parked.
    fn stop_requested(&self) -> bool;
}

/// A connection a front end handed to the parker: its whole state, in the
/// one allocation its task already had (the front end's boxed connection
/// task), so a parked connection costs no more than that.
pub trait ParkedTask: Send + 'static {
    /// As [`Parkable::stop_requested`]; a front end may also say a deadline
    /// of its own has passed (MQTT's keep alive).
    fn stop_requested(&self) -> bool;

    /// Back to the runtime: spawns the connection's loop again on `handle`,
    /// under `tracker`, with its socket.
    fn resume(
        self: Box<Self>,
        stream: TcpStream,
        handle: &tokio::runtime::Handle,
        tracker: &TaskTracker,
    );

    /// For a front end to take its own state back when it could not park.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// What the daemon's parker holds.
pub type Parked = Box<dyn ParkedTask>;

impl Parkable for Parked {
    fn stop_requested(&self) -> bool {
        (**self).stop_requested()
    }
}

/// The parker and the quiet time after which a connection goes to it.
pub type Parking = (Arc<Parker<Parked>>, Duration);

/// Starts the daemon's parker for `tracker`'s runtime (call from within
/// it): connections come back as tasks of `tracker`.
///
/// # Errors
/// The parker thread could not be started.
pub fn start(tracker: &TaskTracker, parked: Arc<AtomicUsize>) -> io::Result<Arc<Parker<Parked>>> {
    let handle = tokio::runtime::Handle::current();
    let tracker = tracker.clone();
    Parker::start(
        move |stream, item: Parked| item.resume(stream, &handle, &tracker),
        parked,
    )
}

/// The parker's front: hands connections over to its thread.
pub struct Parker<T> {
    tx: SyncSender<(TcpStream, T)>,
    waker: Waker,
    parked: Arc<AtomicUsize>,
    /// Set when the thread has ended: nothing can park any more.
    closed: Arc<AtomicBool>,
}

impl<T> std::fmt::Debug for Parker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker")
            .field("parked", &self.parked.load(Relaxed))
            .finish_non_exhaustive()
    }
}

struct Slot<T> {
    stream: mio::net::TcpStream,
    item: T,
}

impl<T: Parkable> Parker<T> {
    /// Starts the parker thread, which keeps `parked` up to date. `resume`
    /// runs on that thread for each connection that must go back to the
    /// runtime (it should only spawn). The thread ends once every sender
    /// is gone and nothing is parked; whatever is handed over after that
    /// goes straight back.
    ///
    /// # Errors
    /// The poll or the thread could not be created.
    pub fn start(
        resume: impl Fn(TcpStream, T) + Send + 'static,
        parked: Arc<AtomicUsize>,
    ) -> io::Result<Arc<Self>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let (tx, rx) = sync_channel(MAX_QUEUED);
        let count = parked.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        std::thread::Builder::new()
            .name("sensegate-parker".into())
            .spawn(move || {
                run(poll, &rx, &resume, &count);
                ended.store(true, Relaxed);
                while let Ok((stream, item)) = rx.try_recv() {
                    resume(stream, item);
                }
            })?;
        Ok(Arc::new(Self {
            tx,
            waker,
            parked,
            closed,
        }))
    }

    /// Hands a connection over; gives it back when the queue is full or
    /// the parker has ended.
    ///
    /// # Errors
    /// The stream and item, to carry on as a task.
    pub fn park(&self, stream: TcpStream, item: T) -> Result<(), (TcpStream, T)> {
        if self.is_closed() {
            return Err((stream, item));
        }
        match self.tx.try_send((stream, item)) {
            Ok(()) => {
                // A failed wake only delays the hand-over to the next stop
                // check.
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => Err(back),
        }
    }

    /// Connections parked now.
    #[must_use]
    pub fn parked(&self) -> usize {
        self.parked.load(Relaxed)
    }

    /// Whether the parker thread has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }
}

/// The parked connections, by slot.
struct Table<'a, T, R> {
    slots: Vec<Option<Slot<T>>>,
    free: Vec<usize>,
    count: &'a AtomicUsize,
    resume: &'a R,
}

impl<T: Parkable, R: Fn(TcpStream, T)> Table<'_, T, R> {
    fn insert(&mut self, poll: &Poll, stream: TcpStream, item: T) {
        let i = self.free.pop().unwrap_or(self.slots.len());
        let mut stream = mio::net::TcpStream::from_std(stream);
        // Registering a socket that is already readable reports it at the
        // next poll, so bytes that came during the hand-over are not
        // missed.
        if poll
            .registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .is_err()
        {
            if i < self.slots.len() {
                self.free.push(i);
            }
            (self.resume)(TcpStream::from(stream), item);
            return;
        }
        if i == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[i] = Some(Slot { stream, item });
        self.count.fetch_add(1, Relaxed);
    }

    fn give_back(&mut self, poll: &Poll, i: usize) {
        let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        if let Err(e) = poll.registry().deregister(&mut slot.stream) {
            // Still in the poll under this token: the slot is retired rather
            // than given to another connection.
            tracing::warn!(error = %e, "parker: deregistering a connection failed");
        } else {
            self.free.push(i);
        }
        self.count.fetch_sub(1, Relaxed);
        (self.resume)(TcpStream::from(slot.stream), slot.item);
    }

    fn give_back_stopped(&mut self, poll: &Poll) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|s| s.item.stop_requested())
            {
                self.give_back(poll, i);
            }
        }
    }
}

fn run<T: Parkable, R: Fn(TcpStream, T)>(
    mut poll: Poll,
    rx: &Receiver<(TcpStream, T)>,
    resume: &R,
    count: &AtomicUsize,
) {
    let mut events = Events::with_capacity(1024);
    let mut parked = Table {
        slots: Vec::new(),
        free: Vec::new(),
        count,
        resume,
    };
    let mut next_scan = Instant::now() + STOP_CHECK;
    loop {
        let wait = next_scan.saturating_duration_since(Instant::now());
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(error = %e, "parker poll failed; handing every connection back");
            for i in 0..parked.slots.len() {
                parked.give_back(&poll, i);
            }
            return;
        }
        for event in &events {
            if event.token() != WAKE {
                parked.give_back(&poll, event.token().0);
            }
        }
        let disconnected = loop {
            match rx.try_recv() {
                Ok((stream, item)) => parked.insert(&poll, stream, item),
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        // Stop requests, every STOP_CHECK, not on every wake-up: the scan
        // touches every parked connection.
        if Instant::now() >= next_scan {
            parked.give_back_stopped(&poll);
            next_scan = Instant::now() + STOP_CHECK;
        }
        if disconnected && count.load(Relaxed) == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    struct Item {
        id: usize,
        stop: Arc<AtomicBool>,
    }

    impl Parkable for Item {
        fn stop_requested(&self) -> bool {
            self.stop.load(Relaxed)
        }
    }

    /// A connected pair: the server side (non-blocking, to park) and the
    /// client side.
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    #[test]
    fn readable_and_stopped_connections_come_back_and_the_thread_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (back_tx, back) = std::sync::mpsc::sync_channel(16);
        let count = Arc::new(AtomicUsize::new(0));
        let parker = Parker::start(
            move |stream, item: Item| {
                let _ = back_tx.send((stream, item.id));
            },
            count.clone(),
        )
        .unwrap();
        let (s1, mut c1) = pair(&listener);
        let (s2, _c2) = pair(&listener);
        let stop2 = Arc::new(AtomicBool::new(false));
        let never = Arc::new(AtomicBool::new(false));
        assert!(parker.park(s1, Item { id: 1, stop: never }).is_ok());
        assert!(
            parker
                .park(
                    s2,
                    Item {
                        id: 2,
                        stop: stop2.clone()
                    }
                )
                .is_ok()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while parker.parked() < 2 {
            assert!(Instant::now() < deadline, "not parked");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A byte wakes the first, and the byte is still there to read.
        c1.write_all(b"x").unwrap();
        let (mut s1, id) = back.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(id, 1);
        let mut byte = [0u8; 1];
        s1.set_nonblocking(false).unwrap();
        s1.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        // A stop request brings back the second within the check period.
        stop2.store(true, Relaxed);
        let (_s2, id) = back.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(id, 2);
        assert_eq!(parker.parked(), 0);
        // With every sender gone and nothing parked, the thread ends (and
        // drops `resume`, which closes this channel).
        drop(parker);
        assert!(matches!(
            back.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
