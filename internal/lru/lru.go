// Package lru is a map bounded to a number of entries that, when full,
// forgets the least recently used one. Throttles keep their per-key state
// in one, so that a flood of distinct keys costs bounded memory.
package lru

import "container/list"

// Map is a bounded map. It is not safe for concurrent use.
type Map[K comparable, V any] struct {
	max   int
	order *list.List // front = most recently used; elements hold item
	items map[K]*list.Element
}

type item[K comparable, V any] struct {
	key K
	val V
}

// New returns an empty map holding at most size entries (at least one).
func New[K comparable, V any](size int) *Map[K, V] {
	return &Map[K, V]{max: max(size, 1), order: list.New(), items: make(map[K]*list.Element)}
}

// Get returns k's value and marks it used.
func (c *Map[K, V]) Get(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(item[K, V]).val, true
}

// Put sets k's value, forgetting the least recently used entry if the map
// is full.
func (c *Map[K, V]) Put(k K, v V) {
	if e, ok := c.items[k]; ok {
		e.Value = item[K, V]{k, v}
		c.order.MoveToFront(e)
		return
	}
	for c.order.Len() >= c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(item[K, V]).key)
	}
	c.items[k] = c.order.PushFront(item[K, V]{k, v})
}

// Remove forgets k.
func (c *Map[K, V]) Remove(k K) {
	if e, ok := c.items[k]; ok {
		c.order.Remove(e)
		delete(c.items, k)
	}
}

// Len returns the number of entries.
func (c *Map[K, V]) Len() int { return c.order.Len() }
