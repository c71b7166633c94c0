//go:build !unix

package node_test

import (
	"testing"
	"time"
)

// processCPU is not measured here.
func processCPU(testing.TB) time.Duration { return 0 }
