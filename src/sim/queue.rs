//! The future event list: a binary heap ordered by (time, insertion sequence).
//!
//! Equal times come out in the order they were scheduled (FIFO), so a run is the same on
//! every machine and thread count. Scheduling into the past is refused, not reordered.
//!
//! One event may wait beside the heap instead of in it ([`EventQueue::schedule_aside`]):
//! the next arrival of an open workload, which would otherwise cost a heap push and pop per
//! session. It takes its sequence number like any other event, so the order is unchanged.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::workload::SimTime;

struct Entry<E> {
    at: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

/// An event was scheduled before the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event scheduled at {at} but the clock is already at {now}")]
pub struct InThePast {
    pub at: SimTime,
    pub now: SimTime,
}

/// Pending events and the simulation clock.
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    aside: Option<Entry<E>>,
    now: SimTime,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            aside: None,
            now: SimTime::ZERO,
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn now(&self) -> SimTime {
        self.now
    }

    pub fn len(&self) -> usize {
        self.heap.len() + usize::from(self.aside.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules `event` at `at` (not before now).
    pub fn schedule(&mut self, at: SimTime, event: E) -> Result<(), InThePast> {
        if at < self.now {
            return Err(InThePast { at, now: self.now });
        }
        self.heap.push(Reverse(Entry {
            at,
            seq: self.next_seq,
            event,
        }));
        self.next_seq += 1;
        Ok(())
    }

    /// Schedules `event` `delay` after now.
    pub fn schedule_in(&mut self, delay: SimTime, event: E) {
        let at = self.now.after(delay);
        self.heap.push(Reverse(Entry {
            at,
            seq: self.next_seq,
            event,
        }));
        self.next_seq += 1;
    }

    /// Schedules `event` `delay` after now, beside the heap; returns it back if an event
    /// is already waiting there.
    pub fn schedule_aside(&mut self, delay: SimTime, event: E) -> Result<(), E> {
        if self.aside.is_some() {
            return Err(event);
        }
        self.aside = Some(Entry {
            at: self.now.after(delay),
            seq: self.next_seq,
            event,
        });
        self.next_seq += 1;
        Ok(())
    }

    /// When the earliest event is due, without taking it.
    pub fn next_at(&self) -> Option<SimTime> {
        let top = self.heap.peek().map(|Reverse(top)| top.at);
        match (self.aside.as_ref().map(|a| a.at), top) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Takes the earliest event and advances the clock to it.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let aside_first = match (&self.aside, self.heap.peek()) {
            (Some(aside), Some(Reverse(top))) => aside < top,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let entry = if aside_first {
            self.aside.take()?
        } else {
            self.heap.pop()?.0
        };
        self.now = entry.at;
        Some((entry.at, entry.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_times_are_first_in_first_out() {
        let mut q = EventQueue::default();
        let t = SimTime::from_nanos(10);
        for e in ["a", "b", "c"] {
            q.schedule(t, e).unwrap();
        }
        q.schedule(SimTime::from_nanos(5), "first").unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["first", "a", "b", "c"]);
    }

    #[test]
    fn an_event_aside_keeps_its_place_in_order() {
        let mut q = EventQueue::default();
        let t = SimTime::from_nanos(10);
        q.schedule(t, "a").unwrap();
        q.schedule_aside(t, "aside").unwrap();
        assert_eq!(q.schedule_aside(t, "second"), Err("second"));
        q.schedule(t, "b").unwrap();
        q.schedule(SimTime::from_nanos(3), "early").unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["early", "a", "aside", "b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn pops_in_order_whatever_the_push_order() {
        let mut q = EventQueue::default();
        let mut state = 12345u64;
        let mut times = Vec::new();
        for i in 0..1000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = SimTime::from_nanos(state % 50);
            times.push((at, i));
            q.schedule(at, i).unwrap();
        }
        times.sort();
        let popped: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(popped, times);
    }

    #[test]
    fn refuses_the_past() {
        let mut q = EventQueue::default();
        q.schedule(SimTime::from_nanos(10), ()).unwrap();
        q.pop();
        assert_eq!(
            q.schedule(SimTime::from_nanos(9), ()),
            Err(InThePast {
                at: SimTime::from_nanos(9),
                now: SimTime::from_nanos(10)
            })
        );
        q.schedule_in(SimTime::ZERO, ()); // now is fine
        assert_eq!(q.len(), 1);
    }
}
