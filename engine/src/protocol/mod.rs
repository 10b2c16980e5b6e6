//! The parent <-> child protocol, readable in one place.
//!
//! One `SOCK_SEQPACKET` socketpair, close-on-exec on both ends. The sequence:
//!
//! 1. parent: clone3 the child into new user and pid namespaces, and hand
//!    its pidfd to the maker of its network namespace (see `netns`).
//! 2. child:  unshares its mount, uts and ipc namespaces and sets the
//!    hostname (none of which needs the maps), then waits for the maps (it
//!    is still unmapped).
//! 3. parent: meanwhile writes uid_map/gid_map and sends
//!    [`ToChild::MapsWritten`]; or hands the child's pidfd to the
//!    kennel-idmap it started before the clone, which writes them and says
//!    so itself with one byte on the socket the child inherited.
//!    With a network (`run.kennel.net=pasta` or `bridge[=NAME]`), the
//!    child then joins its network namespace and sends
//!    [`ToParent::StartNetwork`], carrying a NETLINK_ROUTE socket made
//!    there. The parent starts the network (pasta, see `pasta`; or
//!    kennel-net, see `bridge`) and answers [`ToChild::NetworkStarted`]
//!    once what the rootfs needs of it exists (pasta's resolv.conf), then
//!    [`ToChild::NetworkUp`] once the interface is configured. The child
//!    builds the rootfs in between, and waits for the second answer
//!    before anything of the container's runs (hooks included).
//! 4. child:  sets up the rootfs, joining the network namespace before it
//!    mounts sysfs, pivots, switches user, drops capabilities. With
//!    `--tty` it sends [`ToParent::PtyMaster`] with the master fd.
//! 5. child:  execs. Success closes its end (close-on-exec), so the parent
//!    reads end-of-file; any failure instead sends [`ToParent::Failed`] with
//!    (stage, errno, path) and the child exits.
//!
//! The child dies with the parent: PR_SET_PDEATHSIG is its first act, and
//! right after it (and again after the credential switch, which clears it)
//! it checks that the parent's end is still open, so a parent killed before
//! the signal was armed is noticed too.
//!
//! The parts: `messages` (what each side sends, and the decoder that
//! refuses a bad frame), `failure` (`ChildFailure` and its `Stage`),
//! `channel` (the socketpair, with an SCM_RIGHTS fd beside a message) and
//! `sync` (the parent's waits at the sync points). They import each other
//! by name, never this file, which only re-exports what the engine uses.
//! May import: `sys`, and the crate root's `Error`.

mod channel;
mod failure;
mod messages;
mod sync;

pub use channel::Channel;
pub use failure::{io_errno, namespace_failure, ChildFailure, Stage};
pub use messages::{decode, ToChild, ToParent};
pub use sync::{await_request, reported_failure, serve_network_request};
