package msp

// connList is a list of connections in the order they joined it: the
// server's idle and partial lists. It is intrusive, each conn carrying its
// own links for each list, so that joining and leaving, which happen for
// every message, cost no allocation. The lists are guarded by s.mu.
type connList struct {
	head, tail *conn
	n          int
	links      func(*conn) *connLinks // the links of c this list uses
}

// connLinks is a conn's place in one connList.
type connLinks struct {
	prev, next *conn
	in         bool // c is in the list
}

func newConnList(links func(*conn) *connLinks) connList { return connList{links: links} }

// Len is the number of connections in l.
func (l *connList) Len() int { return l.n }

// front is the connection that joined l first, nil if none.
func (l *connList) front() *conn { return l.head }

// pushBack adds c, which must not be in l, at the end.
func (l *connList) pushBack(c *conn) {
	k := l.links(c)
	k.prev, k.next, k.in = l.tail, nil, true
	if l.tail != nil {
		l.links(l.tail).next = c
	} else {
		l.head = c
	}
	l.tail = c
	l.n++
}

// remove takes c out of l if it is in it.
func (l *connList) remove(c *conn) {
	k := l.links(c)
	if !k.in {
		return
	}
	if k.prev != nil {
		l.links(k.prev).next = k.next
	} else {
		l.head = k.next
	}
	if k.next != nil {
		l.links(k.next).prev = k.prev
	} else {
		l.tail = k.prev
	}
	*k = connLinks{}
	l.n--
}
