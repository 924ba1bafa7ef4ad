#!/usr/bin/perl
# In-band registration (XEP-0077) with Net::Jabber, after the `reguser` script of
# Programming Jabber ch. 7: with only host:port it makes an inquiry, with
# field=value pairs an attempt.  One request per run, one line of output:
#
#   reguser.pl 127.0.0.1:5222                      [Inquiry] Fields: email, name, password, username
#   reguser.pl 127.0.0.1:5222 username=joseph ...  [Attempt] (joseph) Successful registration
#                                                  [Attempt] (dj) Error: 409 (...)
#
# --domain NAME sets the stream's 'to' (default localhost); --preauth TOKEN first
# presents an invitation token (XEP-0445) on the same stream.
use strict;
use warnings;
use Getopt::Long;
use Net::Jabber qw(Client);

use constant NS_REGISTER => 'jabber:iq:register';

my $domain  = 'localhost';
my $preauth;
GetOptions('domain=s' => \$domain, 'preauth=s' => \$preauth) or die "bad options\n";
my $target = shift @ARGV or die "usage: $0 host:port [--preauth TOKEN] [field=value ...]\n";
my ($host, $port) = split(/:/, $target);
$port ||= 5222;

my $c = Net::Jabber::Client->new();
defined($c->Connect(hostname => $host, port => $port, componentname => $domain, timeout => 10))
    or die "Cannot reach Jabber server at $host:$port\n";
$| = 1;

if (defined $preauth) {
    my $iq = Net::Jabber::IQ->new();
    $iq->SetType('set');
    $iq->InsertRawXML("<preauth xmlns='urn:xmpp:pars:0' token='$preauth'/>");
    my $result = $c->SendAndReceiveWithID($iq, 10);
    die "no answer to <preauth/>\n" unless defined $result;
    print "[Preauth] ", ($result->GetType() eq 'result' ? 'accepted' : 'Error: ' . $result->GetErrorCode()), "\n";
}

my ($iq, $query, $result);
if (@ARGV) {
    print "[Attempt] ";
    $iq = Net::Jabber::IQ->new();
    $iq->SetType('set');
    $query = $iq->NewChild(NS_REGISTER);
    foreach my $arg (@ARGV) {
        my ($field, $value) = split(/=/, $arg, 2);
        print "($value) " if $field eq 'username';
        my $setter = 'Set' . ucfirst($field);
        $query->$setter($value);
    }
    $result = $c->SendAndReceiveWithID($iq, 10);
    die "no answer\n" unless defined $result;
    if ($result->GetType() eq 'result') {
        print "Successful registration\n";
    } else {
        print "Error: ", $result->GetErrorCode(), " (", $result->GetError(), ")\n";
    }
} else {
    print "[Inquiry] ";
    $iq = Net::Jabber::IQ->new();
    $iq->SetType('get');
    $iq->NewChild(NS_REGISTER);
    $result = $c->SendAndReceiveWithID($iq, 10);
    die "no answer\n" unless defined $result;
    if ($result->GetType() eq 'result') {
        my %contents = $result->GetChild(NS_REGISTER)->GetRegister();
        delete $contents{instructions};
        print "Fields: ", join(', ', sort grep { $_ ne 'x' } keys %contents), "\n";
    } else {
        print "Error: ", $result->GetErrorCode(), " (", $result->GetError(), ")\n";
    }
}
$c->Disconnect();
