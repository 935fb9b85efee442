package validator

import (
	"fmt"
	"net/url"
	"strings"
)

// Attributes of a PostgreSQL role that make it privileged: a token never
// grants such a role unless allow_privileged_roles is on. The shim reads
// them from pg_authid (rolsuper, rolbypassrls, rolcreaterole).
const (
	AttrSuperuser  = "SUPERUSER"
	AttrBypassRLS  = "BYPASSRLS"
	AttrCreateRole = "CREATEROLE"
)

// RolePrivilege is one reason a role is privileged: it holds Attribute
// itself (Via empty), or it is a member, directly or through other roles,
// of the role Via, which holds Attribute.
type RolePrivilege struct {
	Attribute string
	Via       string
}

// RolePrivileges are the privileged attributes a role holds, as the server
// knows them when it decides a login. An empty list means the role is not
// privileged (or does not exist: the login then fails in the server).
type RolePrivileges struct {
	List []RolePrivilege
}

// ServerRolePrivileges is the key under which the shim passes the
// requested role's privileges to Go (in the settings, like the other server
// facts): see ParseRolePrivileges for the format.
const ServerRolePrivileges = "server.role_privileges"

// ParseRolePrivileges reads the privileges of a role written as a comma
// separated list of ATTRIBUTE or ATTRIBUTE:role entries, where role is the
// role the requested role is a member of that holds the attribute, with
// '%' and ',' (and any other byte) escaped as %XX. "" and "none" mean no
// privileges: "SUPERUSER", "CREATEROLE,BYPASSRLS:admins". Attribute names
// other than the known ones are kept (an attribute the shim reports is
// privileged by definition).
func ParseRolePrivileges(s string) (*RolePrivileges, error) {
	p := &RolePrivileges{}
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return p, nil
	}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		attr, via, _ := strings.Cut(e, ":")
		attr = strings.ToUpper(strings.TrimSpace(attr))
		if attr == "" || strings.IndexFunc(attr, func(r rune) bool {
			return (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_'
		}) >= 0 {
			return nil, fmt.Errorf("role privilege %q: expected ATTRIBUTE or ATTRIBUTE:role (SUPERUSER, BYPASSRLS, CREATEROLE)", e)
		}
		v, err := url.PathUnescape(via)
		if err != nil {
			return nil, fmt.Errorf("role privilege %q: %v", e, err)
		}
		p.List = append(p.List, RolePrivilege{Attribute: attr, Via: v})
	}
	return p, nil
}

// String returns p in the format ParseRolePrivileges reads ("none" when
// empty).
func (p *RolePrivileges) String() string {
	if p == nil || len(p.List) == 0 {
		return "none"
	}
	parts := make([]string, len(p.List))
	for i, x := range p.List {
		parts[i] = x.Attribute
		if x.Via != "" {
			parts[i] += ":" + strings.NewReplacer("%", "%25", ",", "%2C").Replace(x.Via)
		}
	}
	return strings.Join(parts, ",")
}

// describe says why role is privileged, as sentences' middle part:
// `role "x" has SUPERUSER, and is a member of "y", which has BYPASSRLS`.
func (p *RolePrivileges) describe(role string) string {
	var own []string
	via := map[string][]string{}
	var order []string
	for _, x := range p.List {
		if x.Via == "" {
			own = append(own, x.Attribute)
			continue
		}
		if _, ok := via[x.Via]; !ok {
			order = append(order, x.Via)
		}
		via[x.Via] = append(via[x.Via], x.Attribute)
	}
	var parts []string
	if len(own) > 0 {
		parts = append(parts, "has "+joinAnd(own))
	}
	for _, v := range order {
		parts = append(parts, fmt.Sprintf("is a member of %s, which has %s", quote(v), joinAnd(via[v])))
	}
	return "role " + quote(role) + " " + joinAnd(parts)
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// checkPrivileges refuses, in delegated mode, a granted role that is
// privileged unless the policy allows it. It runs after a grant was found.
func (r *run) checkPrivileges(grant string) (Reason, string) {
	priv := r.req.RolePrivileges
	switch {
	case r.pol.AllowPrivilegedRoles:
		r.skip(checkPrivileges, fmt.Sprintf("%q is on: the attributes of the role are not checked.", SettingPrefix+"allow_privileged_roles"))
		return "", ""
	case priv == nil:
		r.skip(checkPrivileges, "The attributes of the role are not known here (the server reads them from pg_authid at login; oauth_jwt_check needs --role-attributes).")
		return "", ""
	}
	r.begin(checkPrivileges)
	if len(priv.List) == 0 {
		return "", ""
	}
	return ReasonPrivilegedRole, fmt.Sprintf("The token would grant role %s (%s), but %s; a token grants roles with SUPERUSER, BYPASSRLS or CREATEROLE, or members of such roles, only when %q is on.",
		quote(r.req.Role), grant, priv.describe(r.req.Role), SettingPrefix+"allow_privileged_roles")
}
