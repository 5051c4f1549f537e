//! Registrations and their epoll entries: interest merging, generation
//! tokens, one-shot re-arming and the delivery of each registration's single
//! completion.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::action::{map_events, Action};
use crate::worker::RawEvent;

/// Identifies one registration. Ids start at 1, grow by one and are never
/// reused within a port; below 2^53 they are exact as JavaScript numbers.
pub type RegistrationId = u64;

/// The single outcome of one registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub id: RegistrationId,
    pub action: Action,
    /// The event mask the kernel reported for the fd, or 0 for
    /// [`Action::Abandoned`].
    pub events: u32,
    /// The fd the registration was made for.
    pub fd: RawFd,
}

impl Completion {
    fn abandoned(id: RegistrationId, fd: RawFd) -> Self {
        Self {
            id,
            action: Action::Abandoned,
            events: 0,
            fd,
        }
    }
}

struct Registration {
    id: RegistrationId,
    /// Event bits asked for, without mode flags.
    interest: u32,
}

/// The epoll entry of one fd and the registrations waiting on it.
struct FdEntry {
    /// `epoll_event.data` of the entry: a generation number in the high 32
    /// bits and the fd in the low 32. A new entry gets a new generation, so
    /// events queued for an earlier file under the same fd number never match.
    token: u64,
    registrations: Vec<Registration>,
}

impl FdEntry {
    fn interest(&self) -> u32 {
        self.registrations
            .iter()
            .fold(0, |merged, registration| merged | registration.interest)
    }
}

/// Every pending registration of one port, by fd and by id.
#[derive(Default)]
pub struct Registry {
    fds: HashMap<RawFd, FdEntry>,
    fd_by_id: HashMap<RegistrationId, RawFd>,
    last_id: RegistrationId,
    last_generation: u32,
    /// `EPOLL_CTL_ADD`s minus successful `EPOLL_CTL_DEL`s.
    added_entries: usize,
}

impl Registry {
    /// Number of registrations still waiting for readiness.
    pub fn pending_count(&self) -> usize {
        self.fd_by_id.len()
    }

    /// Upper bound on the entries in the epoll instance, armed or not: the
    /// entries this registry added minus those it deleted. The kernel also
    /// drops the entry of a file that is closed without `remove`, which this
    /// count does not see.
    pub fn entry_count_bound(&self) -> usize {
        self.added_entries
    }

    /// Registers interest in `interest` on `fd`: `EPOLL_CTL_MOD` with the
    /// interest of every registration on the fd merged, then `EPOLL_CTL_ADD`
    /// if the kernel has no entry (`ENOENT`).
    ///
    /// `ENOENT` for an fd that has pending registrations means the file they
    /// were made for is closed and the fd number now names another file.
    /// Those registrations can never complete, so they are abandoned into
    /// `abandoned` and the fd gets a new entry. Any other error leaves the
    /// registry unchanged.
    pub fn add(
        &mut self,
        epoll: &Epoll,
        fd: RawFd,
        interest: u32,
        abandoned: &mut Vec<Completion>,
    ) -> Result<RegistrationId, Errno> {
        if let Some(entry) = self.fds.get_mut(&fd) {
            match modify(epoll, fd, entry.interest() | interest, entry.token) {
                Ok(()) => {
                    let id = next_id(&mut self.last_id);
                    entry.registrations.push(Registration { id, interest });
                    self.fd_by_id.insert(id, fd);
                    return Ok(id);
                }
                Err(Errno::ENOENT) => self.abandon_fd(fd, abandoned),
                Err(errno) => return Err(errno),
            }
        }

        let token = self.next_token(fd);
        match modify(epoll, fd, interest, token) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {
                ctl_add(epoll, fd, interest, token)?;
                self.added_entries += 1;
            }
            Err(errno) => return Err(errno),
        }
        let id = next_id(&mut self.last_id);
        self.fds.insert(
            fd,
            FdEntry {
                token,
                registrations: vec![Registration { id, interest }],
            },
        );
        self.fd_by_id.insert(id, fd);
        Ok(id)
    }

    /// Abandons one pending registration and narrows the fd's epoll interest
    /// to the registrations left. Returns false if `id` is not pending.
    /// Costs time linear in the registrations on the same fd.
    pub fn cancel(
        &mut self,
        epoll: &Epoll,
        id: RegistrationId,
        abandoned: &mut Vec<Completion>,
    ) -> bool {
        let Some(fd) = self.fd_by_id.remove(&id) else {
            return false;
        };
        let entry = self
            .fds
            .get_mut(&fd)
            .expect("every pending registration has an fd entry");
        entry
            .registrations
            .retain(|registration| registration.id != id);
        abandoned.push(Completion::abandoned(id, fd));

        // An entry left armed for the cancelled interest would wake the
        // worker for nothing. Failure means the fd is closed, and then the
        // kernel dropped the entry itself.
        let _ = modify(epoll, fd, entry.interest(), entry.token);
        if entry.registrations.is_empty() {
            self.fds.remove(&fd);
        }
        true
    }

    /// Deletes `fd` from the epoll instance and abandons every registration
    /// on it. The registrations are abandoned even if `EPOLL_CTL_DEL` fails
    /// because the fd is already closed.
    pub fn remove(&mut self, epoll: &Epoll, fd: RawFd, abandoned: &mut Vec<Completion>) {
        if with_fd(fd, |fd| epoll.delete(fd)).is_ok() {
            self.added_entries = self.added_entries.saturating_sub(1);
        }
        self.abandon_fd(fd, abandoned);
    }

    /// Abandons every pending registration.
    pub fn abandon_all(&mut self, abandoned: &mut Vec<Completion>) {
        for (fd, entry) in self.fds.drain() {
            abandoned.extend(
                entry
                    .registrations
                    .iter()
                    .map(|registration| Completion::abandoned(registration.id, fd)),
            );
        }
        self.fd_by_id.clear();
    }

    /// Completes the registrations that `event` satisfies and re-arms the fd
    /// for those still pending. Events whose token no longer matches an
    /// entry (the fd was removed, or its file replaced) are dropped.
    pub fn dispatch(&mut self, epoll: &Epoll, event: RawEvent, completed: &mut Vec<Completion>) {
        let fd = (event.token & u64::from(u32::MAX)) as RawFd;
        let Some(entry) = self.fds.get_mut(&fd) else {
            return;
        };
        if entry.token != event.token {
            return;
        }

        let fd_by_id = &mut self.fd_by_id;
        entry.registrations.retain(|registration| {
            match map_events(event.events, registration.interest) {
                Some(action) => {
                    fd_by_id.remove(&registration.id);
                    completed.push(Completion {
                        id: registration.id,
                        action,
                        events: event.events,
                        fd,
                    });
                    false
                }
                None => true,
            }
        });

        if entry.registrations.is_empty() {
            // EPOLLONESHOT disarmed the kernel entry when it reported the
            // event, so it stays in the interest list without firing.
            self.fds.remove(&fd);
            return;
        }

        // EPOLLONESHOT disarmed the entry, so the registrations left need a
        // re-arm. If that fails the fd was closed behind the port's back, and
        // they can never complete.
        if modify(epoll, fd, entry.interest(), entry.token).is_err() {
            self.abandon_fd(fd, completed);
        }
    }

    fn next_token(&mut self, fd: RawFd) -> u64 {
        // NOTE: generations wrap after 2^32 new entries. An event would have
        // to stay queued across all of them on the same fd number to match a
        // later entry.
        self.last_generation = self.last_generation.wrapping_add(1);
        (u64::from(self.last_generation) << 32) | u64::from(fd as u32)
    }

    fn abandon_fd(&mut self, fd: RawFd, abandoned: &mut Vec<Completion>) {
        let Some(entry) = self.fds.remove(&fd) else {
            return;
        };
        for registration in entry.registrations {
            self.fd_by_id.remove(&registration.id);
            abandoned.push(Completion::abandoned(registration.id, fd));
        }
    }
}

/// Builds the epoll event for `interest`, always one-shot: the kernel
/// disarms the entry after it reports an event, so a level-triggered fd
/// cannot make the worker spin.
fn armed_event(interest: u32, token: u64) -> EpollEvent {
    let flags = EpollFlags::from_bits_retain(interest as i32) | EpollFlags::EPOLLONESHOT;
    EpollEvent::new(flags, token)
}

/// Returns the next registration id. Ids start at 1.
fn next_id(last_id: &mut RegistrationId) -> RegistrationId {
    *last_id += 1;
    *last_id
}

fn modify(epoll: &Epoll, fd: RawFd, interest: u32, token: u64) -> Result<(), Errno> {
    with_fd(fd, |fd| epoll.modify(fd, &mut armed_event(interest, token)))
}

fn ctl_add(epoll: &Epoll, fd: RawFd, interest: u32, token: u64) -> Result<(), Errno> {
    with_fd(fd, |fd| epoll.add(fd, armed_event(interest, token)))
}

/// Runs one `epoll_ctl` on a descriptor that the caller owns, not the port.
fn with_fd<T>(fd: RawFd, ctl: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
    debug_assert!(fd >= 0, "callers reject negative fds");
    // SAFETY: `fd` is not -1 (callers reject negative values), and the
    // borrowed fd lives only for one epoll_ctl call, which reads its number
    // and fails with EBADF if it is not open. The port never reads, writes or
    // closes the descriptor.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    ctl(fd)
}
