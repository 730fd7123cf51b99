//go:build !unix

package main

import "os"

// statsSignal is nil where there is no SIGUSR1: -stats answers nothing.
var statsSignal os.Signal
