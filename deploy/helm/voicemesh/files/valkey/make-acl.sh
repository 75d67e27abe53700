# Valkey's ACL file from the chart's rules and the users' passwords (templates/valkey.yaml,
# init container `acl`). Each rules/<user>.rule is access.py's line for that user with
# #@SHA256@ where the password's SHA-256 goes; passwords/<user> is the user's password (its
# Secret, mounted in this container only). The file written holds digests, no password.
set -eu
umask 077
rules=${ACL_RULES_DIR:-/etc/valkey/rules}
passwords=${ACL_PASSWORDS_DIR:-/etc/valkey/passwords}
out=${ACL_FILE:-/run/valkey/users.acl}
: > "$out.tmp"
for rule in "$rules"/*.rule; do
  user=$(basename "$rule" .rule)
  line=$(cat "$rule")
  case "$line" in
    *"#@SHA256@"*)
      if [ ! -s "$passwords/$user" ]; then
        echo "valkey acl: no password for user $user (its Secret is empty or missing)" >&2
        exit 1
      fi
      digest=$(sha256sum < "$passwords/$user" | cut -d' ' -f1)
      line="${line%%#@SHA256@*}#$digest${line#*#@SHA256@}"
      ;;
  esac
  printf '%s\n' "$line" >> "$out.tmp"
done
mv "$out.tmp" "$out"
echo "valkey acl: $(wc -l < "$out") users written"
