/*-------------------------------------------------------------------------
 *
 * libpq_token_hook.c
 *		A libpq application that logs in through OAUTHBEARER with a bearer
 *		token it already has, instead of running psql's device flow.
 *
 * PostgreSQL 18's libpq asks the application for a token through the
 * authdata hook (PQsetAuthDataHook, PQAUTHDATA_OAUTH_BEARER_TOKEN). This
 * program answers with a token read from the file named by the environment
 * variable OAUTH_TOKEN_FILE (re-read at every request, so a sidecar or a
 * cron job can rotate it), else from the environment variable OAUTH_TOKEN.
 * Never from the command line: process lists and shell history keep
 * arguments. It then connects with the connection string given as its only
 * argument and prints current_user and system_user.
 *
 *	  OAUTH_TOKEN_FILE=/run/secrets/pg-token ./libpq_token_hook \
 *		"host=db.example.com dbname=postgres user=etl sslmode=verify-full \
 *		 oauth_issuer=https://sso.example.com/realms/corp oauth_client_id=etl"
 *
 * libpq requires oauth_issuer and oauth_client_id even when the hook
 * supplies the token: it checks that the server's pg_hba issuer names the
 * same issuer before it asks the hook. With oauth_issuer set to the issuer,
 * libpq first connects without a token to learn the discovery URL (the
 * server logs that attempt as a failed authentication), then asks the hook
 * and connects again. With oauth_issuer set to the discovery URL itself
 * (https://sso.example.com/realms/corp/.well-known/openid-configuration),
 * libpq asks the hook at once and logs in with one connection.
 *
 * Build against PostgreSQL 18 or later:
 *	  cc -I"$(pg_config --includedir)" libpq_token_hook.c \
 *		-L"$(pg_config --libdir)" -lpq -o libpq_token_hook
 *
 * The project's test test/clients (TestLibpqTokenHook) builds and runs it.
 *
 * examples/libpq_token_hook/libpq_token_hook.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

/* A JWT of this size is already far beyond what any provider issues. */
#define MAX_TOKEN_BYTES (64 * 1024)

/*
 * read_token returns a malloc'd token from OAUTH_TOKEN_FILE or OAUTH_TOKEN,
 * without surrounding white space, or NULL after printing why. Error
 * messages name the file, never its contents.
 */
static char *
read_token(void)
{
	const char *path = getenv("OAUTH_TOKEN_FILE");
	char	   *buf;
	size_t		len = 0;
	size_t		start = 0;

	if (path == NULL || path[0] == '\0')
	{
		const char *env = getenv("OAUTH_TOKEN");

		if (env == NULL || env[0] == '\0')
		{
			fprintf(stderr, "libpq_token_hook: set OAUTH_TOKEN_FILE (or OAUTH_TOKEN)\n");
			return NULL;
		}
		buf = strdup(env);
		if (buf == NULL)
		{
			fprintf(stderr, "libpq_token_hook: out of memory\n");
			return NULL;
		}
		len = strlen(buf);
	}
	else
	{
		int			fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		struct stat st;
		ssize_t		n;

		if (fd < 0)
		{
			fprintf(stderr, "libpq_token_hook: cannot open \"%s\": %s\n", path, strerror(errno));
			return NULL;
		}
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_TOKEN_BYTES)
		{
			fprintf(stderr, "libpq_token_hook: \"%s\" is not a regular file of at most %d bytes\n",
					path, MAX_TOKEN_BYTES);
			close(fd);
			return NULL;
		}
		buf = malloc(MAX_TOKEN_BYTES + 1);
		if (buf == NULL)
		{
			fprintf(stderr, "libpq_token_hook: out of memory\n");
			close(fd);
			return NULL;
		}
		while (len < MAX_TOKEN_BYTES &&
			   (n = read(fd, buf + len, MAX_TOKEN_BYTES - len)) != 0)
		{
			if (n < 0)
			{
				if (errno == EINTR)
					continue;
				fprintf(stderr, "libpq_token_hook: reading \"%s\": %s\n", path, strerror(errno));
				close(fd);
				free(buf);
				return NULL;
			}
			len += (size_t) n;
		}
		close(fd);
		buf[len] = '\0';
	}

	/* Trim white space (a trailing newline, typically). */
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
		buf[--len] = '\0';
	while (buf[start] != '\0' && strchr(" \t\r\n", buf[start]) != NULL)
		start++;
	if (start > 0)
		memmove(buf, buf + start, len - start + 1);
	if (buf[0] == '\0')
	{
		fprintf(stderr, "libpq_token_hook: the token is empty\n");
		free(buf);
		return NULL;
	}
	return buf;
}

/* libpq calls this when it no longer needs request->token. */
static void
cleanup_token(PGconn *conn, PGoauthBearerRequest *request)
{
	(void) conn;
	if (request->token != NULL)
	{
		explicit_bzero(request->token, strlen(request->token));
		free(request->token);
		request->token = NULL;
	}
}

/*
 * The authdata hook. For a bearer token request it sets request->token at
 * once (a token that is not at hand could be fetched asynchronously through
 * request->async instead). Every other request goes to libpq's default.
 */
static int
token_hook(PGauthData type, PGconn *conn, void *data)
{
	PGoauthBearerRequest *request;

	if (type != PQAUTHDATA_OAUTH_BEARER_TOKEN)
		return PQdefaultAuthDataHook(type, conn, data);

	request = data;
	/* What the server asked for: useful in a log, and never secret. */
	fprintf(stderr, "libpq_token_hook: token requested for %s (scope \"%s\")\n",
			request->openid_configuration ? request->openid_configuration : "(none)",
			request->scope ? request->scope : "");

	request->token = read_token();
	if (request->token == NULL)
		return -1;				/* libpq fails the connection attempt */
	request->cleanup = cleanup_token;
	return 1;					/* handled */
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	int			status = 0;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s CONNINFO   (the token comes from OAUTH_TOKEN_FILE or OAUTH_TOKEN)\n", argv[0]);
		return 2;
	}

	PQsetAuthDataHook(token_hook);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "libpq_token_hook: connection failed: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}

	res = PQexec(conn, "select current_user, system_user");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		fprintf(stderr, "libpq_token_hook: query failed: %s", PQerrorMessage(conn));
		status = 1;
	}
	else
		printf("%s,%s\n", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));

	PQclear(res);
	PQfinish(conn);
	return status;
}
