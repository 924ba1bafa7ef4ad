#!/usr/bin/perl
# Legacy authentication (XEP-0078, jabber:iq:auth) with Net::Jabber, as old scripts did it.
#
#   legacy_login.pl [--domain localhost] host:port username password resource
#
# Prints the fields the server offers for the account (the IQ-get), then logs in
# with Net::XMPP's AuthIQAuth, which picks the method from those fields exactly
# as it always did (zero-knowledge over digest over plaintext), and proves the
# session works with a software version request (XEP-0092):
#
#   [Fields] digest password resource username
#   [Auth] ok
#   [Session] joseph@localhost/home version chatgate
use strict;
use warnings;
use Getopt::Long;
use Net::Jabber qw(Client);

my $domain = 'localhost';
GetOptions('domain=s' => \$domain) or die "bad options\n";
my ($target, $username, $password, $resource) = @ARGV;
die "usage: $0 host:port username password resource\n" unless defined $resource;
my ($host, $port) = split(/:/, $target);
$| = 1;

my $c = Net::Jabber::Client->new();
defined($c->Connect(hostname => $host, port => $port, componentname => $domain, timeout => 10))
    or die "Cannot reach Jabber server at $host:$port\n";

my $iq = Net::Jabber::IQ->new();
$iq->SetType('get');
$iq->NewChild('jabber:iq:auth')->SetUsername($username);
my $fields = $c->SendAndReceiveWithID($iq, 10);
die "no answer\n" unless defined $fields;
if ($fields->GetType() eq 'result') {
    my @names;
    foreach my $child ($fields->GetChild('jabber:iq:auth')->GetTree()->children()) {
        my $name = $child->get_tag();
        my $data = $child->get_cdata();
        push @names, ($name eq 'sequence' || $name eq 'token') ? "$name=$data" : $name;
    }
    print "[Fields] ", join(' ', sort @names), "\n";
} else {
    print "[Fields] Error: ", $fields->GetErrorCode(), "\n";
}

my @result = $c->AuthIQAuth(username => $username, password => $password, resource => $resource);
if (@result && $result[0] eq 'ok') {
    print "[Auth] ok\n";
    my $version = Net::Jabber::IQ->new();
    $version->SetType('get');
    $version->SetTo($domain);
    $version->NewChild('jabber:iq:version');
    my $answer = $c->SendAndReceiveWithID($version, 10);
    if (defined $answer && $answer->GetType() eq 'result') {
        print "[Session] ", $answer->GetTo(), " version ", $answer->GetChild()->GetName(), "\n";
    } else {
        print "[Session] failed\n";
    }
} else {
    print "[Auth] Error: ", (defined $result[0] ? $result[0] : 'none'), "\n";
}
$c->Disconnect();
