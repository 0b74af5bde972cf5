# shellcheck shell=bash
# The shell side of the CLI conventions (README: CLI conventions), sourced by
# train.sh, runtask.sh and scripts/*.sh. It lives in the package so that it
# ships wherever tfodkit/ does (the Docker image too).
#
# Exit status, for every script and CLI of the toolkit:
#   0    done
#   2    nothing was done: the arguments, options or variables are wrong, a file
#        they name is missing, or a tool the command needs is not installed
#   1    the work started and failed
#   130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM
# (train.sh and runtask.sh pass on the status of the step or task that failed.)

# die <status> <what (how to fix)>: the one error line on stderr, then exit.
die() {
  local status=$1
  shift
  printf 'error: %s\n' "$*" >&2
  exit "$status"
}
