# Sourced by the non-Rust example builds: skip a build whose inputs did not change.
#
#   stamp_of FILE...        prints a hash of the files' contents (and their names)
#   up_to_date OUT STAMP    true when OUT exists and OUT.stamp holds STAMP
#   record_stamp OUT STAMP  writes OUT.stamp (after OUT was written)
#
# The stamp lives beside the component, so a fresh output folder rebuilds everything.

stamp_of() {
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    sha256sum <"$f"
  done | sha256sum | cut -c1-32
}

up_to_date() {
  [[ -f $1 && -f $1.stamp && $(cat "$1.stamp") == "$2" ]]
}

record_stamp() {
  printf '%s\n' "$2" >"$1.stamp"
}
