//! A team of the pool's threads that stays awake for one image whose layers are split over the
//! pool ([`with_team`]), and hands out each layer's tasks by an atomic counter ([`for_each`]).
//!
//! Through rayon, every split layer was a fork-join whose other half waited on an idle thread,
//! and rayon puts its idle threads to sleep within microseconds: a layer behind a short serial
//! step (a border copy, the last layer's pooling) woke the other thread through the kernel. On a
//! 2-vCPU VM (Xeon, AVX-512) a `join` of two 30 µs halves cost 4-18 µs when the threads met at
//! once, and 37-71 µs when one of them had worked alone for 20-100 µs before it; MobileNetV2 at
//! batch 1 has 52 layers of 30-200 µs. Here the helpers spin (then yield) between a layer's
//! tasks until the image is done, as onnxruntime's pool does between its ops.
//!
//! The caller's thread takes tasks too and finishes the job alone if no helper turns up (the
//! pool busy elsewhere), so a team never waits on a thread that is not there.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// Checks of an empty job slot a helper spins through before it yields between checks.
const SPINS: u32 = 1 << 14;

type Task<'a> = dyn Fn(usize) + Sync + 'a;
type Panic = Box<dyn Any + Send>;

/// What the caller and its helpers share.
struct Shared {
    /// Odd while a job is live; every job has its own value.
    epoch: AtomicUsize,
    /// The live job's task, with its lifetime erased: valid while a helper counted in
    /// `active` saw `epoch` unchanged after counting itself (see [`Shared::help`]).
    task: Mutex<Option<&'static Task<'static>>>,
    /// The live job's task count and the next task to claim.
    n: AtomicUsize,
    next: AtomicUsize,
    /// Helpers inside the live job.
    active: AtomicUsize,
    /// Set when the image is done: the helpers return.
    stop: AtomicBool,
    /// The first panic of a job's tasks, raised again on the caller's thread.
    panic: Mutex<Option<Panic>>,
}

thread_local! {
    /// The team this thread leads or helps, and whether a task's own `for_each` runs inline:
    /// on a helper, and on the leader while one of its jobs runs (not a second job over the
    /// first, nor a rayon join, whose wait could run a helper's loop on this very thread).
    static TEAM: Cell<(*const Shared, bool)> = const { Cell::new((std::ptr::null(), false)) };
}

impl Shared {
    /// Runs tasks of the live job until none is left.
    fn claim(&self, task: &Task<'_>) {
        let n = self.n.load(SeqCst);
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= n {
                return;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| task(i))) {
                self.panic
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(p);
            }
        }
    }

    /// A helper's loop: joins every job published until the caller stops the team. Returns at
    /// once on a thread already in a team (the leader, or a helper, that picked this job up
    /// while waiting on the pool).
    fn help(&self) {
        if !TEAM.with(Cell::get).0.is_null() {
            return;
        }
        TEAM.with(|t| t.set((self, true)));
        self.help_loop();
        TEAM.with(|t| t.set((std::ptr::null(), false)));
    }

    fn help_loop(&self) {
        let (mut seen, mut idle) = (0, 0u32);
        while !self.stop.load(SeqCst) {
            let e = self.epoch.load(SeqCst);
            if e % 2 == 1 && e != seen {
                // Counted before the second look at `epoch`: the caller retires a job by
                // changing `epoch` and then waits for `active` to drop to 0, so either it sees
                // this helper counted or this helper sees the job retired (sequential
                // consistency orders the two stores before the two loads).
                self.active.fetch_add(1, SeqCst);
                if self.epoch.load(SeqCst) == e {
                    let task = *self.task.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(task) = task {
                        self.claim(task);
                    }
                }
                self.active.fetch_sub(1, SeqCst);
                (seen, idle) = (e, 0);
            } else if idle < SPINS {
                idle += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Publishes `task` over `0..n`, takes tasks itself, and returns once every task is done.
    fn run(&self, n: usize, task: &Task<'_>) {
        // SAFETY: the erased reference is only read by helpers that counted themselves in
        // `active` and then saw this job's epoch; this function returns (and `task` may go)
        // only after retiring the epoch and seeing `active` at 0.
        #[allow(unsafe_code)]
        let erased: &'static Task<'static> =
            unsafe { std::mem::transmute::<&Task<'_>, &'static Task<'static>>(task) };
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(erased);
        self.n.store(n, SeqCst);
        self.next.store(0, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
        self.claim(task);
        self.epoch.fetch_add(1, SeqCst);
        while self.active.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(p) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }
}

/// Runs `f` on a thread of the pool with the other threads spinning as its team: the
/// [`for_each`] calls `f` makes on this thread go to the team.
pub(crate) fn with_team<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let shared = Shared {
        epoch: AtomicUsize::new(0),
        task: Mutex::new(None),
        n: AtomicUsize::new(0),
        next: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        panic: Mutex::new(None),
    };
    let result = rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| shared.help());
        }
        let outer = TEAM.with(|t| t.replace((&shared, false)));
        let result = catch_unwind(AssertUnwindSafe(f));
        TEAM.with(|t| t.set(outer));
        shared.stop.store(true, SeqCst);
        result
    });
    result.unwrap_or_else(|p| resume_unwind(p))
}

/// Runs `task(i)` for every `i` in `0..n`, in parallel: over this thread's team if it leads one
/// (inline inside one of its tasks), over the pool otherwise.
pub(crate) fn for_each(n: usize, task: &Task<'_>) {
    let (team, inline) = TEAM.with(Cell::get);
    if n <= 1 || inline {
        return (0..n).for_each(task);
    }
    if team.is_null() {
        use rayon::prelude::*;
        return (0..n).into_par_iter().with_max_len(1).for_each(task);
    }
    // SAFETY: a non-null TEAM points at the `Shared` of the `with_team` call further up this
    // thread's stack, which outlives this call.
    #[allow(unsafe_code)]
    let shared = unsafe { &*team };
    TEAM.with(|t| t.set((team, true)));
    let done = catch_unwind(AssertUnwindSafe(|| shared.run(n, task)));
    TEAM.with(|t| t.set((team, false)));
    done.unwrap_or_else(|p| resume_unwind(p))
}

/// Runs `f(i, item)` for every item, in parallel as [`for_each`] does.
pub(crate) fn for_each_item<T: Send>(items: Vec<T>, f: impl Fn(usize, T) + Sync) {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|x| Mutex::new(Some(x))).collect();
    for_each(slots.len(), &|i| {
        let item = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(item) = item {
            f(i, item);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task runs exactly once, inside and outside a team, nested jobs inline, and the
    /// results come back in order; a panicking task reaches the caller after the others ran.
    #[test]
    fn runs_every_task_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            let counts: Vec<AtomicUsize> = (0..50).map(|_| AtomicUsize::new(0)).collect();
            let total = with_team(|| {
                for round in 0..200 {
                    for_each(round % 50 + 1, &|i| {
                        counts[i].fetch_add(1, SeqCst);
                        for_each(2, &|_| {
                            counts[0].fetch_add(1, SeqCst);
                        });
                    });
                }
                7
            });
            assert_eq!(total, 7);
            let sum: usize = counts.iter().map(|c| c.load(SeqCst)).sum();
            let tasks: usize = (0..200).map(|r| r % 50 + 1).sum();
            assert_eq!(sum, tasks * 3);
            let mut out = vec![0usize; 9];
            for_each_item(out.iter_mut().collect(), |i, o| *o = i * i);
            assert_eq!(out, (0..9).map(|i| i * i).collect::<Vec<_>>());
        });
    }

    #[test]
    fn a_panicking_task_reaches_the_caller() {
        let ran = AtomicUsize::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            with_team(|| {
                for_each(8, &|i| {
                    ran.fetch_add(1, SeqCst);
                    assert!(i != 3, "task 3 fails");
                })
            })
        }));
        assert!(caught.is_err());
        assert_eq!(ran.load(SeqCst), 8);
        // The team is gone: a later job runs over the pool.
        for_each(4, &|_| {
            ran.fetch_add(1, SeqCst);
        });
        assert_eq!(ran.load(SeqCst), 12);
    }
}
