package presence

import (
	"iter"
	"slices"

	"github.com/msprelay/msprelay/principal"
)

// This file holds the name index behind Lookup. The switchboard looks a
// name up for every message, so a lookup must cost what it finds, not the
// size of the directory (a scan took 3.8 ms at 100k principals).

// entryRef names one entry: the table it is in and its key there. Refs, not
// copies, sit in the index so that replacing a table whose entries keep
// their names leaves the index untouched.
type entryRef struct {
	node string
	key  entryKey
}

// nameIndex maps every name an entry answers to (its user name and each of
// its aliases, exactly as stored, which is what Entry.Answers compares) to
// the entries that answer to it, each once, in no particular order. It is
// part of the Directory's state and guarded by Directory.mu like the tables.
// A posting list is a slice: most names have one entry, and removing a ref
// costs the length of that name's list, i.e. O(matches).
type nameIndex map[string][]entryRef

// entryNames yields the distinct names e answers to. Local entries have
// sorted, distinct aliases, but remote ones are taken as sent.
func entryNames(e *principal.Entry) iter.Seq[string] {
	return func(yield func(string) bool) {
		if !yield(e.User) {
			return
		}
		for i, a := range e.Aliases {
			if a == e.User || slices.Contains(e.Aliases[:i], a) {
				continue
			}
			if !yield(a) {
				return
			}
		}
	}
}

// sameNames reports whether a and b answer to the same names in the same
// stored form, in which case the index needs no change when b replaces a.
func sameNames(a, b *principal.Entry) bool {
	return a.User == b.User && slices.Equal(a.Aliases, b.Aliases)
}

// add indexes the entry e stored at (node, k). The caller has removed any
// previous entry at that key whose names differ.
func (ix nameIndex) add(node string, k entryKey, e *principal.Entry) {
	r := entryRef{node, k}
	for n := range entryNames(e) {
		ix[n] = append(ix[n], r)
	}
}

// remove unindexes the entry e stored at (node, k).
func (ix nameIndex) remove(node string, k entryKey, e *principal.Entry) {
	r := entryRef{node, k}
	for n := range entryNames(e) {
		refs := ix[n]
		i := slices.Index(refs, r)
		if i < 0 {
			continue
		}
		last := len(refs) - 1
		refs[i] = refs[last]
		refs[last] = entryRef{}
		ix.set(n, refs[:last])
	}
}

// replace moves the index from old to e at (node, k); had says whether old
// was there at all.
func (ix nameIndex) replace(node string, k entryKey, old *principal.Entry, had bool, e *principal.Entry) {
	if had && sameNames(old, e) {
		return
	}
	if had {
		ix.remove(node, k, old)
	}
	ix.add(node, k, e)
}

// removeBatch unindexes, in one pass over each affected posting list, every
// ref to node whose key is in keys; names must cover every name those
// entries answered to. Dropping a table whose entries share a popular
// alias then costs that alias's list once, not once per entry.
func (ix nameIndex) removeBatch(node string, keys map[entryKey]struct{}, names map[string]struct{}) {
	for n := range names {
		ix.set(n, slices.DeleteFunc(ix[n], func(r entryRef) bool {
			_, gone := keys[r.key]
			return gone && r.node == node
		}))
	}
}

func (ix nameIndex) set(name string, refs []entryRef) {
	if len(refs) == 0 {
		delete(ix, name)
		return
	}
	ix[name] = refs
}
