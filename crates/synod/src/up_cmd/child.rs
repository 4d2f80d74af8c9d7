//! One child process of `synod up`: start it, learn that it listens, watch it, restart it
//! when it dies (if it may be restarted), and stop it gracefully on request.
//!
//! Children run in their own process group, so a Ctrl-C in the terminal reaches `up` alone
//! and `up` decides the order of shutdown; and on Linux each child asks the kernel for a
//! SIGTERM when `up` dies, so even a SIGKILLed `up` leaves nothing running.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use synod_storage::FileStorage;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::layout::ChildSpec;

/// How long a child may take to print its readiness line.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// Restart delays: the first, the cap, and how long a child must have run for the delay to
/// start again from the first (a child that dies at once is retried ever more slowly).
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const HEALTHY: Duration = Duration::from_secs(5);

/// What a supervisor tells `up`.
#[derive(Debug)]
pub enum Event {
    /// Child `index` (re)started and printed its readiness line.
    Ready { index: usize, pid: u32 },
    /// Child `index` died without being asked to. It is restarted after `restart_in`; with
    /// `None` it is not, and the supervisor has ended.
    Died {
        index: usize,
        pid: u32,
        why: String,
        restart_in: Option<Duration>,
    },
}

/// Everything a supervisor needs besides its child's spec.
#[derive(Clone)]
pub struct Context {
    pub exe: Arc<Path>,
    pub log_format: &'static str,
    pub events: mpsc::UnboundedSender<Event>,
    pub stop: watch::Receiver<bool>,
    /// Set once the whole cluster is up; before that, a death is fatal, not restarted.
    pub cluster_up: Arc<AtomicBool>,
    /// Whether the cluster had formed before this run (see [`Plan::formed`]).
    ///
    /// [`Plan::formed`]: super::layout::Plan::formed
    pub formed: bool,
}

/// Runs child `index` until `ctx.stop` turns true (then stops it) or it dies for good.
pub async fn supervise(index: usize, spec: ChildSpec, mut ctx: Context) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let (pid, why) = match run_once(index, &spec, &mut ctx).await {
            Some(death) => death,
            None => return,
        };
        let lost = lost_after_joining(&spec);
        let restart = spec.restartable && ctx.cluster_up.load(Ordering::SeqCst) && !lost;
        let why = match lost {
            true => format!(
                "{why}, and its data directory is gone: a replica that joined cannot rejoin \
                 under its id, and `up` replaces replicas only when it starts (the next `synod \
                 up` replaces it)"
            ),
            false => why,
        };
        if started.elapsed() >= HEALTHY {
            backoff = BACKOFF_MIN;
        }
        let restart_in = restart.then_some(backoff);
        let _ = ctx.events.send(Event::Died {
            index,
            pid,
            why,
            restart_in,
        });
        if !restart {
            return;
        }
        tokio::select! {
            () = stopped(&mut ctx.stop) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether `spec` is a replica that joined the running cluster (`--join`) and whose data
/// directory vanished: not even its identity is left, which a joining replica records when
/// it first starts (a directory with its identity and no state is one not added yet, which
/// restarts as it started). Restarted with `--join` on the blank directory, it would take
/// part under its id as if it had never promised anything, and `--rejoin` is only for the
/// replicas the cluster was formed with.
fn lost_after_joining(spec: &ChildSpec) -> bool {
    let Some(dir) = spec.paxos_data.as_deref() else {
        return false;
    };
    spec.args.iter().any(|a| a == "--join")
        && !FileStorage::holds_state(dir).unwrap_or(true)
        && matches!(crate::identity::read(dir), Ok(None))
}

/// Starts the child once and waits for it to die (`Some((pid, why))`) or for the stop
/// request (`None`, after stopping it).
async fn run_once(index: usize, spec: &ChildSpec, ctx: &mut Context) -> Option<(u32, String)> {
    let mut child = match spawn(spec, ctx) {
        Ok(child) => child,
        Err(e) => return Some((0, format!("could not be started: {e}"))),
    };
    let pid = child.id().unwrap_or_default();
    let ready = watch_stdout(child.stdout.take(), spec.ready.clone());
    let became_ready = tokio::select! {
        () = stopped(&mut ctx.stop) => {
            terminate(&mut child, pid, &spec.name).await;
            return None;
        }
        status = child.wait() => return Some((pid, describe(status))),
        ready = tokio::time::timeout(READY_LIMIT, ready) => ready,
    };
    match became_ready {
        Ok(Ok(())) => {
            let _ = ctx.events.send(Event::Ready { index, pid });
        }
        // Stdout closed without the line: the child is exiting; report how.
        Ok(Err(_)) => return Some((pid, describe(child.wait().await))),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let why = format!("did not print {:?} within {READY_LIMIT:?}", spec.ready);
            return Some((pid, why));
        }
    }
    tokio::select! {
        () = stopped(&mut ctx.stop) => {
            terminate(&mut child, pid, &spec.name).await;
            None
        }
        status = child.wait() => Some((pid, describe(status))),
    }
}

/// Resolves once `up` asks its children to stop (or is gone, which means the same).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}

/// The flag that tells a Paxos replica how to start on its directory, if it needs one
/// (see `crate::replica_start`). A directory with state is a restart and needs none, and so
/// does a replica that joined the running cluster (its `--join` says how it starts). A blank
/// one belongs to a new replica while the cluster has not formed (`--bootstrap`); once it has
/// (see [`Context::formed`]), it can only be a lost disk (`--rejoin`): started blank, it
/// could vote against promises of its earlier life, so it first learns from the others how
/// far the log got (docs/paxos.md, "Rejoining after a lost disk"). This is `up`'s own
/// knowledge of its cluster, not a guess from what the peers say.
///
/// `up` replaces a replica whose disk it finds lost when it starts under a new id instead
/// (see `super::members`); `--rejoin` remains for the two cases a membership change cannot
/// serve: a directory lost under a running `up`, whose supervisor restarts the same child
/// with the same id (a replacement would be a new child and a change made while `up` runs),
/// and more lost directories than the cluster tolerates, where the others are no majority to
/// decide a change.
fn start_flag(spec: &ChildSpec, ctx: &Context) -> Option<&'static str> {
    let dir = spec.paxos_data.as_ref()?;
    if spec.args.iter().any(|a| a == "--join") {
        return None;
    }
    // Damaged or foreign state is not a blank directory: the replica refuses it with the
    // reason.
    if FileStorage::holds_state(dir).unwrap_or(true) {
        return None;
    }
    if ctx.formed || ctx.cluster_up.load(Ordering::SeqCst) {
        eprintln!(
            "synod up: {} has no data in its directory although the cluster has formed; \
             starting it with --rejoin",
            spec.name
        );
        Some("--rejoin")
    } else {
        Some("--bootstrap")
    }
}

fn spawn(spec: &ChildSpec, ctx: &Context) -> std::io::Result<Child> {
    let mut cmd = Command::new(&*ctx.exe);
    cmd.args(&spec.args);
    cmd.args(start_flag(spec, ctx));
    cmd.env("SYNOD_LOG_FORMAT", ctx.log_format)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: runs in the forked child before exec; prctl, getppid and _exit are
        // async-signal-safe and nothing here allocates or takes a lock.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // `up` may have died before the request above took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// Resolves once the child prints a line containing `ready`; errs if its stdout closes
/// first. Keeps draining stdout afterwards so the child never blocks on a full pipe.
fn watch_stdout(stdout: Option<ChildStdout>, ready: String) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    if let Some(stdout) = stdout {
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(&ready) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
    }
    rx
}

/// SIGTERM (after a SIGCONT, in case it is stopped), then SIGKILL if it lingers.
async fn terminate(child: &mut Child, pid: u32, name: &str) {
    // `id()` is `None` once the child has been reaped, when its pid may belong to another.
    if let Some(Ok(pid)) = child.id().map(libc::pid_t::try_from) {
        // SAFETY: plain syscalls on our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(STOP_LIMIT, child.wait())
        .await
        .is_err()
    {
        eprintln!("synod up: {name} (pid {pid}) ignored SIGTERM for {STOP_LIMIT:?}; killing it");
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(status) => match status.signal() {
            Some(signal) => format!("was killed by signal {signal}"),
            None => format!("exited with {status}"),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}
