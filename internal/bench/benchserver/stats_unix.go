//go:build unix

package main

import (
	"os"
	"syscall"
)

// statsSignal asks for -stats' figures.
var statsSignal os.Signal = syscall.SIGUSR1
