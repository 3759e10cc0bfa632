// go_no_tls: a Go program that does not link crypto/tls (the gotls
// module's error for a binary without the functions it hooks).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("no TLS here", len(os.Args))
}
