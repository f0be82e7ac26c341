package devcloud

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"reagent/src/errdefs"
)

// userFileEntry is one element of a users file:
//
//	[{"authid": "100", "secret": "s3cret", "privileges": ["READ", "OPERATE"]}]
type userFileEntry struct {
	AuthID     string   `json:"authid"`
	Secret     string   `json:"secret"`
	Privileges []string `json:"privileges"`
}

// LoadUsers reads a users file (a JSON list of {authid, secret,
// privileges}) and validates every entry.
func LoadUsers(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	var entries []userFileEntry
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		return nil, errdefs.InvalidArgument("users file %s: %v", path, err)
	}
	users := make([]User, 0, len(entries))
	for i, e := range entries {
		u := User{AuthID: e.AuthID, Secret: e.Secret, Privileges: e.Privileges}
		if err := validateUser(u); err != nil {
			return nil, errdefs.InvalidArgument("users file %s: entry %d: %v", path, i, err)
		}
		users = append(users, u)
	}
	return users, nil
}

// ParseUser parses the --user flag value "authid:secret:PRIV,PRIV".
func ParseUser(s string) (User, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return User{}, errdefs.InvalidArgument("user %q: want authid:secret[:PRIV,PRIV…]", s)
	}
	u := User{AuthID: parts[0], Secret: parts[1]}
	if len(parts) == 3 && parts[2] != "" {
		u.Privileges = strings.Split(parts[2], ",")
	}
	if err := validateUser(u); err != nil {
		return User{}, errdefs.InvalidArgument("user %q: %v", parts[0], err)
	}
	return u, nil
}

func validateUser(u User) error {
	if u.AuthID != SystemAuthID {
		if _, err := strconv.ParseUint(u.AuthID, 10, 64); err != nil {
			return fmt.Errorf("authid %q must be a numeric account key or %q", u.AuthID, SystemAuthID)
		}
	}
	if u.Secret == "" {
		return fmt.Errorf("secret must not be empty")
	}
	for _, p := range u.Privileges {
		if !slices.Contains(Privileges, strings.ToUpper(strings.TrimSpace(p))) {
			return fmt.Errorf("unknown privilege %q (known: %s)", p, strings.Join(Privileges, ", "))
		}
	}
	return nil
}
