//! Send slots shared fairly between accounts: one account may use every free slot while nobody
//! else waits, but never the last [`FairSlots`] `reserve` of them beyond its fair share, so
//! another account's webhook always finds a slot at once even while one account's receivers hang.
//! The rule is the pure [`may_take`]; [`FairSlots`] is the async shell around it.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::FastMap;

/// Whether `account` may take a slot now. `held` is what each account holds, `waiting` how many
/// of each account's sends wait; `total` the slots, `reserve` the slots an account beyond its
/// fair share leaves free for the others.
pub fn may_take<K: Borrow<str> + Hash + Eq, S: BuildHasher>(
    account: &str,
    held: &HashMap<K, usize, S>,
    waiting: &HashMap<K, usize, S>,
    total: usize,
    reserve: usize,
) -> bool {
    let used: usize = held.values().sum();
    if used >= total {
        return false;
    }
    let mine = held.get(account).copied().unwrap_or(0);
    // The accounts holding or waiting for a slot, and this one; counted without allocating (this
    // runs for every acquire and every hand-off).
    let holds = |a: &str| held.get(a).is_some_and(|&n| n > 0);
    let waits = |a: &str| waiting.get(a).is_some_and(|&n| n > 0);
    let active = held.values().filter(|&&n| n > 0).count()
        + waiting.iter().filter(|(a, &n)| n > 0 && !holds((*a).borrow())).count()
        + usize::from(!holds(account) && !waits(account));
    let fair = total.div_ceil(active);
    (active > 1 && mine < fair) || total - used > reserve
}

/// The accounts' counts, keyed by a shared copy of the account id: a waiter takes its id from
/// here, so that neither a count nor a wait allocates once the account is known.
#[derive(Debug, Default)]
struct Books {
    held: FastMap<Arc<str>, usize>,
    waiting: FastMap<Arc<str>, usize>,
    /// The waiting acquires, in arrival order. A freed slot is handed to the first one
    /// [`may_take`] allows, and only that one is woken: waking every waiter on every release cost
    /// each webhook a poll of every other waiting one.
    queue: VecDeque<Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    account: Arc<str>,
    handed: oneshot::Sender<()>,
}

impl Books {
    /// Hand free slots to the first waiters allowed to take them.
    fn hand_off(&mut self, total: usize, reserve: usize) {
        let mut refused: Vec<Arc<str>> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() && self.held.values().sum::<usize>() < total {
            let account = Arc::clone(&self.queue[i].account);
            if refused.contains(&account) {
                i += 1;
                continue;
            }
            // Judged as if it no longer waited (it would not, holding the slot).
            add(&mut self.waiting, &account, -1);
            let allowed = may_take(&account, &self.held, &self.waiting, total, reserve);
            add(&mut self.waiting, &account, 1);
            if !allowed {
                refused.push(account);
                i += 1;
                continue;
            }
            let waiter = self.queue.remove(i).expect("in range");
            add(&mut self.waiting, &waiter.account, -1);
            if waiter.handed.send(()).is_ok() {
                add(&mut self.held, &waiter.account, 1);
            }
            // else: its acquire was dropped meanwhile, which already stopped counting it.
        }
    }
}

/// The send slots of one process.
#[derive(Debug)]
pub struct FairSlots {
    total: usize,
    reserve: usize,
    books: Mutex<Books>,
}

/// A slot, given back when dropped. It borrows its account's id: no allocation per acquire.
#[derive(Debug)]
pub struct Slot<'a> {
    slots: &'a FairSlots,
    account: &'a str,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.release(self.account);
    }
}

impl FairSlots {
    /// `total` slots; an account beyond its fair share leaves `reserve` of them free (at most
    /// `total - 1`, so one account alone can still send).
    pub fn new(total: usize, reserve: usize) -> Arc<Self> {
        let total = total.max(1);
        Arc::new(FairSlots {
            total,
            reserve: reserve.min(total - 1),
            books: Mutex::default(),
        })
    }

    /// Whether a slot is free and nobody waits for one: what comes next is sent at once.
    pub fn idle(&self) -> bool {
        let books = self.books();
        books.queue.is_empty() && books.held.values().sum::<usize>() < self.total
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, account: &str) {
        let mut books = self.books();
        add(&mut books.held, account, -1);
        books.hand_off(self.total, self.reserve);
    }

    pub async fn acquire<'a>(&'a self, account: &'a str) -> Slot<'a> {
        let (id, handed) = {
            let mut books = self.books();
            if may_take(account, &books.held, &books.waiting, self.total, self.reserve) {
                add(&mut books.held, account, 1);
                return Slot { slots: self, account };
            }
            add(&mut books.waiting, account, 1);
            let account_id = books
                .waiting
                .get_key_value(account)
                .map_or_else(|| Arc::from(account), |(id, _)| Arc::clone(id));
            let (tx, rx) = oneshot::channel();
            books.next_id += 1;
            let id = books.next_id;
            books.queue.push_back(Waiter {
                id,
                account: account_id,
                handed: tx,
            });
            (id, rx)
        };
        let mut waiting = Waiting {
            slots: self,
            account,
            id,
            handed,
            done: false,
        };
        // The sender lives in the queue until the slot is handed over, so this only ends with it.
        let _ = (&mut waiting.handed).await;
        waiting.done = true;
        Slot { slots: self, account }
    }
}

/// An acquire waiting for a slot; a wait given up (its future dropped) stops counting, and a slot
/// handed to it in the meantime is given back.
struct Waiting<'a> {
    slots: &'a FairSlots,
    account: &'a str,
    id: u64,
    handed: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut books = self.slots.books();
        if let Some(i) = books.queue.iter().position(|w| w.id == self.id) {
            books.queue.remove(i);
            add(&mut books.waiting, self.account, -1);
            // One account fewer waiting can make another's share larger.
            books.hand_off(self.slots.total, self.slots.reserve);
        } else if self.handed.try_recv().is_ok() {
            // Handed over as the wait was given up: the slot goes to the next waiter.
            add(&mut books.held, self.account, -1);
            books.hand_off(self.slots.total, self.slots.reserve);
        }
    }
}

/// Count one more (`1`) or one fewer (`-1`) for an account. A count that reaches zero stays in
/// the map (no key to allocate again on the next acquire) until the map holds many idle accounts.
fn add(map: &mut FastMap<Arc<str>, usize>, account: &str, delta: isize) {
    match map.get_mut(account) {
        Some(n) => *n = n.saturating_add_signed(delta),
        None if delta > 0 => {
            if map.len() >= 1024 {
                map.retain(|_, n| *n > 0);
            }
            map.insert(Arc::from(account), delta as usize);
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn books(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
        pairs.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    #[test]
    fn one_account_alone_uses_all_but_the_reserve_then_its_share() {
        let none = HashMap::new();
        assert!(
            may_take("e", &books(&[("e", 27)]), &none, 32, 4),
            "5 free: above the reserve"
        );
        assert!(
            !may_take("e", &books(&[("e", 28)]), &none, 32, 4),
            "4 free: kept for others"
        );
        // Another account arrives: it takes from the reserve at once.
        assert!(may_take("h", &books(&[("e", 28)]), &none, 32, 4));
        assert!(!may_take("e", &books(&[("e", 28), ("h", 1)]), &none, 32, 4));
        // Two busy accounts share the slots equally.
        assert!(may_take("h", &books(&[("e", 16), ("h", 15)]), &none, 32, 4));
        assert!(
            !may_take("h", &books(&[("e", 16), ("h", 16)]), &none, 32, 4),
            "all used"
        );
        // A waiting account counts: the one above its share does not take the freed slot.
        assert!(!may_take(
            "e",
            &books(&[("e", 20), ("h", 8)]),
            &books(&[("h", 3)]),
            32,
            4
        ));
        assert!(may_take(
            "h",
            &books(&[("e", 20), ("h", 8)]),
            &books(&[("h", 3)]),
            32,
            4
        ));
    }

    #[tokio::test]
    async fn a_hanging_account_never_takes_the_last_slots() {
        let slots = FairSlots::new(8, 2);
        let mut hanging = Vec::new();
        for _ in 0..6 {
            hanging.push(slots.acquire("e").await);
        }
        // A seventh send of e waits; h gets a slot at once.
        let blocked = tokio::time::timeout(Duration::from_millis(10), slots.acquire("e")).await;
        assert!(blocked.is_err(), "e holds all but the reserve");
        let h = tokio::time::timeout(Duration::from_millis(10), slots.acquire("h")).await;
        assert!(h.is_ok(), "h is served from the reserve");
        drop(h);
        // When e's sends end, e gets its slots back.
        drop(hanging.pop());
        let again = tokio::time::timeout(Duration::from_millis(10), slots.acquire("e")).await;
        assert!(again.is_ok());
    }
}
