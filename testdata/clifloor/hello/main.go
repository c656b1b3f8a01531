// Command hello is the smallest Go program: BenchmarkCLI runs it to show
// what starting any Go binary costs on the machine.
package main

import "os"

func main() { os.Stdout.WriteString("hello\n") }
