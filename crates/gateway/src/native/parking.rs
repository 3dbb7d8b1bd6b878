//! Parking: idle plain-TCP connections wait without a task.
//!
//! An authenticated connection with no subscription, no partial frame and
//! nothing to send, quiet for `native.park_after_ms`, hands its socket and
//! its state to the parker and its task ends. The parker is one thread with
//! one `mio` poll: a parked connection costs its state (a couple of hundred
//! bytes) instead of a task and a runtime I/O registration. When the socket
//! becomes readable, or the connection is told to stop (kick, revocation,
//! idle timeout, shutdown; checked every 100 ms), the parker hands it back
//! to the runtime, where the same connection loop carries on: a stop gets
//! its goodbye frame as always.
//!
//! Bounded: hand-overs go through a channel of [`MAX_QUEUED`]; when it is
//! full a connection simply stays a task. Parked connections still count
//! against every connection cap (their registry entry stays).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use tokio_util::sync::CancellationToken;

/// Hand-overs waiting for the parker thread.
pub const MAX_QUEUED: usize = 1024;
/// How often parked connections are checked for a stop request.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// The token of the parker's own waker.
const WAKE: Token = Token(usize::MAX);

/// What a parked connection leaves with the parker.
pub trait Parkable: Send + 'static {
    /// Whether the connection was told to stop while parked.
    fn stop_requested(&self) -> bool;
}

/// The parker's front: hands connections over to its thread.
pub struct Parker<T> {
    tx: SyncSender<(TcpStream, T)>,
    waker: Waker,
    parked: Arc<AtomicUsize>,
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
    /// runs on that thread for each
    /// connection that must go back to the runtime (it should only spawn).
    /// The thread ends once `shutdown` is cancelled and nothing is parked.
    ///
    /// # Errors
    /// The poll or the thread could not be created.
    pub fn start(
        resume: impl Fn(TcpStream, T) + Send + 'static,
        shutdown: CancellationToken,
        parked: Arc<AtomicUsize>,
    ) -> io::Result<Arc<Self>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let (tx, rx) = sync_channel(MAX_QUEUED);
        let count = parked.clone();
        std::thread::Builder::new()
            .name("sensegate-parker".into())
            .spawn(move || run(poll, &rx, &resume, &shutdown, &count))?;
        Ok(Arc::new(Self { tx, waker, parked }))
    }

    /// Hands a connection over; gives it back when the queue is full or
    /// the parker has stopped.
    ///
    /// # Errors
    /// The stream and item, to carry on as a task.
    pub fn park(&self, stream: TcpStream, item: T) -> Result<(), (TcpStream, T)> {
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
}

fn run<T: Parkable>(
    mut poll: Poll,
    rx: &Receiver<(TcpStream, T)>,
    resume: &impl Fn(TcpStream, T),
    shutdown: &CancellationToken,
    count: &AtomicUsize,
) {
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Slot<T>>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let give_back =
        |poll: &Poll, slots: &mut Vec<Option<Slot<T>>>, free: &mut Vec<usize>, i: usize| {
            if let Some(mut slot) = slots.get_mut(i).and_then(Option::take) {
                let _ = poll.registry().deregister(&mut slot.stream);
                free.push(i);
                count.fetch_sub(1, Relaxed);
                resume(TcpStream::from(slot.stream), slot.item);
            }
        };
    loop {
        if let Err(e) = poll.poll(&mut events, Some(STOP_CHECK))
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(error = %e, "parker poll failed; handing every connection back");
            for i in 0..slots.len() {
                give_back(&poll, &mut slots, &mut free, i);
            }
            return;
        }
        for event in &events {
            if event.token() != WAKE {
                give_back(&poll, &mut slots, &mut free, event.token().0);
            }
        }
        // New arrivals. Registering a socket that is already readable
        // reports it at the next poll, so bytes that came during the
        // hand-over are not missed.
        let disconnected = loop {
            match rx.try_recv() {
                Ok((stream, item)) => {
                    let i = free.pop().unwrap_or(slots.len());
                    let mut stream = mio::net::TcpStream::from_std(stream);
                    if poll
                        .registry()
                        .register(&mut stream, Token(i), Interest::READABLE)
                        .is_err()
                    {
                        free.push(i);
                        resume(TcpStream::from(stream), item);
                        continue;
                    }
                    if i == slots.len() {
                        slots.push(None);
                    }
                    slots[i] = Some(Slot { stream, item });
                    count.fetch_add(1, Relaxed);
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        for i in 0..slots.len() {
            if slots[i].as_ref().is_some_and(|s| s.item.stop_requested()) {
                give_back(&poll, &mut slots, &mut free, i);
            }
        }
        if (shutdown.is_cancelled() || disconnected) && count.load(Relaxed) == 0 {
            return;
        }
    }
}
