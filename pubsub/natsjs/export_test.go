package natsjs

// StartTestServer is startTestServer, for the package's external tests.
var StartTestServer = startTestServer
