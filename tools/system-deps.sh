#!/usr/bin/env bash
# Debian packages the tests use, installed when missing and we may (root, apt-get):
#   chromium + chromium-driver  the browser tests (slides, course site, JupyterLab)
#   bubblewrap                  the sandbox of `course grade` (optional: grading runs unsandboxed without it)
#   nodejs + npm                the course hub's proxy (configurable-http-proxy, `make hub-deps`)
#   fonts-noto-cjk              Chinese in Chromium (the zh_CN edition's slides, site and feedback pages)
# Recommended packages come too (fonts-liberation among them), as on the machine this was tried on.
# Without root, it prints the command to run and leaves the rest to the tests' own messages.
set -uo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "${missing[@]}" >/tmp/course-apt.log 2>&1; then
    apt-get update -q >>/tmp/course-apt.log 2>&1
    apt-get install -y -q "${missing[@]}" >>/tmp/course-apt.log 2>&1 \
      || { echo "apt-get failed (log: /tmp/course-apt.log)"; tail -5 /tmp/course-apt.log; }
  fi
else
  echo "missing Debian packages: ${missing[*]}"
  echo "  install them with: sudo apt-get install ${missing[*]}"
  echo "  (the browser tests fail without chromium; grading runs unsandboxed without bubblewrap)"
fi
exit 0
