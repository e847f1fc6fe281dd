package reliability_test

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill cmd when this process dies, however it
// dies; the child also exits at the end of its stdin.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
