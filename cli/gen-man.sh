#!/bin/sh
# Generates the dcms(1) man page from the help text of the binary:
#   cli/gen-man.sh build/dcms build/dcms.1
# The page has the synopsis and description of `dcms --help`, then one
# section per command with its `dcms COMMAND --help`. Nothing is written by
# hand here, so the page cannot drift from the help.
set -eu
bin=$1
out=$2
tmp="$out.tmp"
# roff: escape backslashes and leading dots/quotes of each line.
esc() { sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/"; }
version=$("$bin" --version | awk '{print $2}')
{
    printf '.TH DCMS 1 "" "dcms %s" "User Commands"\n' "$version"
    printf '.SH NAME\ndcms \\- the command-line client of dcms, the Digital Contract Management System\n'
    printf '.SH SYNOPSIS\n.B dcms\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fISUBCOMMAND\\fR] [\\fIOPTIONS\\fR] [\\fIARGS\\fR]\n'
    printf '.SH DESCRIPTION\n.nf\n'
    "$bin" --help | sed '1,2d' | esc
    printf '.fi\n.SH COMMANDS\n'
    for cmd in $("$bin" --help | sed -n '/^commands:/,/^$/p' | awk 'NF > 1 {print $1}'); do
        printf '.SS %s\n.nf\n' "$cmd"
        "$bin" "$cmd" --help 2>&1 | esc
        printf '.fi\n'
    done
    printf '.SH EXIT STATUS\n.TP\n.B 0\ndone (\\fBtrain watch\\fR, \\fBtrain start \\-\\-watch\\fR: the job succeeded)\n'
    printf '.TP\n.B 1\nrefused by the server, a check failed, not logged in, or a watched training job failed or was cancelled\n'
    printf '.TP\n.B 2\nusage error, an unreadable input file, or a file that would be overwritten\n'
    printf '.TP\n.B 3\nthe server could not be reached\n'
    printf '.SH FILES\n.TP\n.I $XDG_CONFIG_HOME/dcms/config\nprofiles: the server and the refresh token (mode 0600)\n'
    printf '.TP\n.I $XDG_CONFIG_HOME/dcms/keys/\nlocal Ed25519 signing keys (mode 0600)\n'
    printf '.TP\n.I $XDG_CONFIG_HOME/dcms/uploads/\nthe state of unfinished uploads, to resume them\n'
    printf '.SH ENVIRONMENT\n.TP\n.B DCMS_SERVER\nthe server, unless --server is given\n'
    printf '.TP\n.B DCMS_PROFILE\nthe profile, unless --profile is given\n'
    printf '.TP\n.B NO_COLOR\nnever colour the output\n'
    printf '.SH SEE ALSO\n.BR dcmsd (1),\ndocs/cli.md in the dcms sources\n'
} > "$tmp"
mv "$tmp" "$out"
