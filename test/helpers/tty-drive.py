"""Runs a command on a pseudo-terminal and answers each prompt (a line ending in ": ")
with the next line of $TTY_ANSWERS (newline-separated). Prints what the terminal showed; exits
with the command's exit code. Used to test the no-echo passphrase prompt."""
import os, pty, sys, time, select
argv = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b''
answers = [a.encode() + b'\r' for a in os.environ.get('TTY_ANSWERS', '').split('\n') if a]
deadline = time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
        if answers and out.split(b'\n')[-1].rstrip(b' ').endswith(b':'):
            os.write(fd, answers.pop(0))
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
sys.exit(os.waitstatus_to_exitcode(status))
