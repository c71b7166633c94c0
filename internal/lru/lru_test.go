package lru

import "testing"

func TestMap(t *testing.T) {
	c := New[string, int](2)
	c.Put("a", 1)
	c.Put("b", 2)
	c.Get("a") // a is now most recent
	c.Put("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Error("b (least recently used) not evicted")
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Error("a evicted")
	}
	c.Put("a", 4)
	if v, _ := c.Get("a"); v != 4 || c.Len() != 2 {
		t.Error("update failed")
	}
	c.Remove("a")
	if _, ok := c.Get("a"); ok || c.Len() != 1 {
		t.Error("remove failed")
	}
	if len(c.items) != c.Len() {
		t.Fatalf("map (%d) and list (%d) disagree", len(c.items), c.Len())
	}
}

// A flood of distinct keys never grows the map past its bound.
func TestMapBounded(t *testing.T) {
	c := New[int, int](10)
	for i := range 1000 {
		c.Put(i, i)
	}
	if c.Len() != 10 || len(c.items) != 10 {
		t.Fatalf("map holds %d entries (%d in its index), bound 10", c.Len(), len(c.items))
	}
	for i := 990; i < 1000; i++ {
		if _, ok := c.Get(i); !ok {
			t.Fatalf("recent key %d forgotten", i)
		}
	}
	if New[int, int](0).max != 1 {
		t.Fatal("a map of size 0 must hold one entry")
	}
}
