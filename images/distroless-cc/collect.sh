#!/bin/sh
# Copies into $1 the files of the packages a distroless `cc` image holds, and the few files
# made at install rather than shipped (the CA bundle) or written by hand (users, groups).
set -eu
root="$1"
mkdir -p "$root"
for package in base-files netbase tzdata ca-certificates libc6 libgcc-s1 libgomp1 libstdc++6 libssl3; do
  dpkg -L "$package" | while read -r path; do
    # Files and links only: folders come with them (a folder of its own would be empty).
    if [ -f "$path" ] || [ -L "$path" ]; then
      # Under its real folder: Debian 12 merges /lib into /usr/lib, and the links are made below.
      path="$(realpath "$(dirname "$path")")/$(basename "$path")"
      case "$path" in /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/locale/*) continue ;; esac
      cp -a --parents "$path" "$root"
    fi
  done
done
for folder in bin sbin lib lib64; do
  mkdir -p "$root/usr/$folder"
  ln -s "usr/$folder" "$root/$folder"
done
cp -a --parents /etc/ssl/certs/ca-certificates.crt "$root"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
install -d -m 0700 "$root/root"
install -d -m 1777 "$root/tmp"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
