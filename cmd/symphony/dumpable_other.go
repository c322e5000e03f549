//go:build !linux

package main

// hideFromSameUser has no portable equivalent outside Linux.
func hideFromSameUser() error { return nil }
