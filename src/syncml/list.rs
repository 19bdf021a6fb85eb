//! [`List`]: a vector that stores one element inline.

use std::ops::{Deref, DerefMut};

/// A list that keeps its first element inline: no heap allocation for zero or one element.
///
/// Most SyncML commands carry exactly one `Item`, so this keeps parsing at a small, constant
/// number of allocations per message. It dereferences to a slice.
///
/// ```
/// use winmdm::syncml::List;
/// let mut l = List::new();
/// l.push(1);
/// l.push(2);
/// assert_eq!(&l[..], &[1, 2]);
/// ```
#[derive(Clone, Debug)]
pub struct List<T>(ListRepr<T>);

#[derive(Clone, Debug)]
enum ListRepr<T> {
    Inline(Option<T>),
    Heap(Vec<T>),
}

impl<T> List<T> {
    /// An empty list (does not allocate).
    pub const fn new() -> Self {
        List(ListRepr::Inline(None))
    }

    /// Appends an element; the second element moves the list to the heap.
    pub fn push(&mut self, value: T) {
        match &mut self.0 {
            ListRepr::Heap(v) => v.push(value),
            ListRepr::Inline(slot) => match slot.take() {
                None => *slot = Some(value),
                Some(first) => {
                    let mut v = Vec::with_capacity(4);
                    v.push(first);
                    v.push(value);
                    self.0 = ListRepr::Heap(v);
                }
            },
        }
    }

    /// The last element, mutably.
    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.as_mut_slice().last_mut()
    }

    /// The elements as a slice.
    pub fn as_slice(&self) -> &[T] {
        match &self.0 {
            ListRepr::Inline(o) => o.as_slice(),
            ListRepr::Heap(v) => v,
        }
    }

    /// The elements as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match &mut self.0 {
            ListRepr::Inline(o) => o.as_mut_slice(),
            ListRepr::Heap(v) => v,
        }
    }

    /// Converts into a `Vec`.
    pub fn into_vec(self) -> Vec<T> {
        match self.0 {
            ListRepr::Inline(o) => o.into_iter().collect(),
            ListRepr::Heap(v) => v,
        }
    }

    pub(crate) fn map<U>(self, f: impl FnMut(T) -> U) -> List<U> {
        match self.0 {
            ListRepr::Inline(o) => List(ListRepr::Inline(o.map(f))),
            ListRepr::Heap(v) => List(ListRepr::Heap(v.into_iter().map(f).collect())),
        }
    }
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List::new()
    }
}

impl<T> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> DerefMut for List<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: PartialEq> PartialEq for List<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for List<T> {}

impl<T> From<Vec<T>> for List<T> {
    fn from(v: Vec<T>) -> Self {
        if v.len() <= 1 {
            List(ListRepr::Inline(v.into_iter().next()))
        } else {
            List(ListRepr::Heap(v))
        }
    }
}

impl<T> FromIterator<T> for List<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut l = List::new();
        for x in iter {
            l.push(x);
        }
        l
    }
}

impl<'l, T> IntoIterator for &'l List<T> {
    type Item = &'l T;
    type IntoIter = std::slice::Iter<'l, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}
